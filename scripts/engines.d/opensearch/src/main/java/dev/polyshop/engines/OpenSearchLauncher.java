package dev.polyshop.engines;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.concurrent.CountDownLatch;

import org.codelibs.opensearch.runner.OpenSearchRunner;

/**
 * Starts one OpenSearch node for polyshop's integration tests and keeps it running until the
 * process gets SIGTERM/SIGINT.
 *
 * Usage: OpenSearchLauncher BASE_DIR HTTP_PORT TRANSPORT_PORT
 *
 * The node binds to 127.0.0.1 only, uses single-node discovery, has no security plugin (plain
 * HTTP) and turns the disk watermarks off so a nearly full disk on a developer machine does not
 * make indices read-only. When the node is up the launcher writes BASE_DIR/ready.
 */
public final class OpenSearchLauncher {
    private OpenSearchLauncher() {
    }

    public static void main(final String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: OpenSearchLauncher BASE_DIR HTTP_PORT TRANSPORT_PORT");
            System.exit(2);
        }
        final Path base = Paths.get(args[0]).toAbsolutePath();
        final String httpPort = args[1];
        final String transportPort = args[2];
        Files.createDirectories(base);
        final Path ready = base.resolve("ready");
        Files.deleteIfExists(ready);

        final OpenSearchRunner runner = new OpenSearchRunner();
        final CountDownLatch stop = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                Files.deleteIfExists(ready);
                runner.close();
            } catch (final Exception e) {
                System.err.println("opensearch launcher: close failed: " + e);
            }
            stop.countDown();
        }, "polyshop-opensearch-shutdown"));

        runner.onBuild((index, settings) -> {
            settings.put("network.host", "127.0.0.1");
            settings.put("http.port", httpPort);
            settings.put("transport.port", transportPort);
            settings.put("discovery.type", "single-node");
            settings.put("cluster.routing.allocation.disk.threshold_enabled", false);
            settings.put("action.auto_create_index", true);
        }).build(OpenSearchRunner.newConfigs()
                .basePath(base.resolve("home").toString())
                .clusterName("polyshop-test")
                .numOfNode(1)
                .printOnFailure());

        runner.ensureYellow();
        Files.writeString(ready, "http://127.0.0.1:" + httpPort + "\n");
        System.out.println("polyshop opensearch launcher: node ready on http://127.0.0.1:" + httpPort);
        stop.await();
    }
}
