/* demo.c - the demo catalog: a category tree and n products (phones, clothing, food) made up
 * from our own word lists by a seeded generator, so every run of `make run` shows the same
 * shop. Written through the store's ordinary create path, so the outbox carries the demo
 * products to the search service like any others. */
#include <stdio.h>
#include <string.h>

#include "polyshop/error.h"
#include "polyshop/json.h"
#include "polyshop/uuid.h"
#include "product.h"
#include "store.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

typedef struct {
  uint64_t s;
} rng_t;

/* splitmix64: small, fast and good enough to make a catalog look varied. */
static uint64_t rng_next(rng_t *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static int rnd(rng_t *r, int lo, int hi) { /* inclusive */
  return lo + (int)(rng_next(r) % (uint64_t)(hi - lo + 1));
}
#define PICK(r, arr) ((arr)[rng_next(r) % N(arr)])

static const struct {
  const char *slug, *name, *parent;
} categories[] = {
    {"electronics", "Electronics", NULL},
    {"phones", "Phones", "electronics"},
    {"smartphones", "Smartphones", "phones"},
    {"rugged-phones", "Rugged phones", "phones"},
    {"clothing", "Clothing", NULL},
    {"tops", "Tops", "clothing"},
    {"shirts", "Shirts", "tops"},
    {"knitwear", "Knitwear", "tops"},
    {"bottoms", "Bottoms", "clothing"},
    {"outerwear", "Outerwear", "clothing"},
    {"food", "Food", NULL},
    {"snacks", "Snacks", "food"},
    {"pantry", "Pantry", "food"},
    {"breakfast", "Breakfast", "food"},
    {"drinks", "Drinks", "food"},
};

/* --- phones ---------------------------------------------------------------------------- */

static const char *const phone_brands[] = {"Nimbus", "Verto", "Kestrel", "Orbita",
                                           "Lumora", "Tessel", "Quillon", "Aravel"};
static const char *const phone_series[] = {"Aero", "Nova", "Flux", "Pulse", "Edge",
                                           "Vista", "Core", "Zen", "Spark", "Halo"};
static const char *const phone_suffix[] = {"", " Pro", " Max", " Lite", " Mini", " Plus"};
static const char *const phone_cpus[] = {"Arcadia A12 octa-core", "Arcadia A15 octa-core",
                                         "Helix H7 hexa-core", "Helix H9 octa-core",
                                         "Borealis B3 octa-core", "Quartzline Q8 deca-core"};
static const char *const phone_colours[] = {"graphite", "silver", "ocean blue", "sage green",
                                            "sunset orange", "midnight", "pearl white"};
static const int phone_memory[] = {4, 6, 8, 12, 16};
static const int phone_camera[] = {12, 48, 50, 64, 108, 200};

/* --- clothing -------------------------------------------------------------------------- */

static const char *const cloth_brands[] = {"Fernhill", "Northwick", "Marlowe & Co", "Tidewell",
                                           "Ashgrove", "Calloway", "Brindle", "Hartmoor"};
static const char *const cloth_adjs[] = {"Relaxed", "Classic", "Slim", "Everyday", "Heritage",
                                         "Weekend", "Tailored", "Organic"};
static const struct {
  const char *name, *category;
} garments[] = {{"Oxford Shirt", "shirts"},    {"Linen Shirt", "shirts"},
                {"Flannel Shirt", "shirts"},   {"Crewneck Sweater", "knitwear"},
                {"Cardigan", "knitwear"},      {"Chino Trousers", "bottoms"},
                {"Denim Jeans", "bottoms"},    {"Cargo Shorts", "bottoms"},
                {"Rain Jacket", "outerwear"},  {"Quilted Vest", "outerwear"},
                {"Wool Overcoat", "outerwear"}};
static const char *const materials[] = {"cotton", "linen", "wool", "organic cotton",
                                        "recycled polyester", "merino wool", "cotton blend"};
static const char *const cloth_colours[] = {"navy", "black", "white", "olive", "red",
                                            "grey", "camel", "burgundy", "sky blue"};
static const char *const fits[] = {"regular", "slim", "relaxed"};
static const char *const sizes[] = {"XS", "S", "M", "L", "XL", "XXL"};

/* --- food ------------------------------------------------------------------------------ */

static const char *const food_brands[] = {"Oakbarrel", "Meadowfield", "Saltmarsh", "Goldcrest",
                                          "Hillfarm", "Bramblewood", "Sunhollow", "Copperpot"};
static const struct {
  const char *name, *category;
  int kcal_lo, kcal_hi, shelf_lo, shelf_hi, grams;
  const char *base[3];
} foods[] = {
    {"Almonds", "snacks", 560, 620, 180, 365, 200, {"almonds", "sea salt", "sunflower oil"}},
    {"Crackers", "snacks", 420, 480, 120, 270, 150, {"wheat flour", "olive oil", "salt"}},
    {"Crisps", "snacks", 500, 540, 90, 180, 125, {"potatoes", "sunflower oil", "salt"}},
    {"Granola", "breakfast", 430, 480, 180, 300, 500, {"oats", "honey", "almonds"}},
    {"Muesli", "breakfast", 340, 380, 180, 300, 750, {"oats", "raisins", "hazelnuts"}},
    {"Strawberry Jam", "breakfast", 240, 260, 365, 730, 340, {"strawberries", "sugar", "lemon juice"}},
    {"Pasta", "pantry", 350, 360, 540, 900, 500, {"durum wheat semolina", "water", ""}},
    {"Basmati Rice", "pantry", 345, 355, 540, 900, 1000, {"basmati rice", "", ""}},
    {"Tomato Sauce", "pantry", 60, 90, 365, 540, 400, {"tomatoes", "olive oil", "basil"}},
    {"Olive Oil", "pantry", 820, 830, 365, 540, 500, {"extra virgin olive oil", "", ""}},
    {"Apple Juice", "drinks", 44, 48, 180, 365, 1000, {"apples", "vitamin C", ""}},
    {"Sparkling Water", "drinks", 0, 0, 365, 730, 750, {"mineral water", "carbon dioxide", ""}},
    {"Cold Brew Coffee", "drinks", 2, 10, 60, 120, 330, {"water", "arabica coffee", ""}},
};
static const char *const flavours[] = {"Smoked", "Honey", "Sea Salt", "Rosemary", "Classic",
                                       "Organic", "Wholegrain", "Chili", "Lemon", "Vanilla"};
static const char *const extras[] = {"cinnamon", "paprika", "rosemary", "chili", "lemon zest",
                                     "vanilla", "black pepper", "garlic"};

static int64_t demo_base_ms = 1735689600000ll; /* 2025-01-01: created_at spreads from here */

/* The fields every demo product shares. */
static void finish(ps_arena_t *a, product_in_t *in, rng_t *r, int i) {
  in->fields |= PF_SKU | PF_NAME | PF_DESCRIPTION | PF_KIND | PF_BRAND | PF_CATEGORY |
                PF_PRICE | PF_CURRENCY | PF_STOCK | PF_ATTRIBUTES | PF_IMAGES | PF_POPULARITY;
  in->currency = "USD";
  in->popularity = (int64_t)rnd(r, 0, 5000) * (rnd(r, 0, 9) == 0 ? 4 : 1);
  in->created_ms = demo_base_ms + (int64_t)i * 3600000ll * 7 + rnd(r, 0, 3599999);
  /* No images: the demo has no pictures in the media store, and a link that answers 404 is
   * worse for a client than none. */
  in->images = "[]";
}

static void make_phone(ps_arena_t *a, rng_t *r, int i, product_in_t *out) {
  product_in_t in = {0};
  const char *brand = PICK(r, phone_brands);
  const char *series = PICK(r, phone_series);
  int gen = rnd(r, 3, 15);
  in.kind = "phone";
  in.brand = brand;
  in.category = rnd(r, 0, 9) == 0 ? "rugged-phones" : "smartphones";
  in.sku = ps_arena_sprintf(a, "PH-%.3s-%05d", brand, i);
  in.name = ps_arena_sprintf(a, "%s %s %d%s", brand, series, gen, PICK(r, phone_suffix));
  int memory = PICK(r, phone_memory), camera = PICK(r, phone_camera);
  const char *cpu = PICK(r, phone_cpus);
  const char *colour = PICK(r, phone_colours);
  double screen = 5.8 + rnd(r, 0, 11) / 10.0;
  int battery = rnd(r, 30, 60) * 100;
  in.attributes = ps_arena_sprintf(
      a,
      "{\"cpu\":\"%s\",\"memory\":%d,\"camera\":%d,\"screen\":%.1f,\"battery\":%d,"
      "\"colour\":\"%s\",\"5g\":%s,\"dual_sim\":%s}",
      cpu, memory, camera, screen, battery, colour, gen > 6 ? "true" : "false",
      rnd(r, 0, 1) ? "true" : "false");
  in.description = ps_arena_sprintf(
      a,
      "The %s pairs a %s processor with %d GB of memory, a %d MP main camera and a %.1f-inch "
      "display. Its %d mAh battery lasts a full day. Colour: %s.",
      in.name, cpu, memory, camera, screen, battery, colour);
  int64_t base = (int64_t)rnd(r, 99, 1299) * 100 - 1;
  in.price = base;
  /* Storage tiers are variants with their own SKU, price and stock. */
  static const int storage[] = {64, 128, 256, 512, 1024};
  int first = rnd(r, 0, 2), nv = rnd(r, 1, 3);
  in.variants = ps_arena_alloc(a, (size_t)nv * sizeof(variant_in_t));
  in.nvariants = (size_t)nv;
  for (int v = 0; v < nv; v++) {
    int gb = storage[first + v];
    in.variants[v].sku = ps_arena_sprintf(a, "%s-%d", in.sku, gb);
    in.variants[v].attributes = ps_arena_sprintf(a, "{\"storage\":%d}", gb);
    in.variants[v].stock = rnd(r, 0, 9) == 0 ? 0 : rnd(r, 1, 120);
    in.variants[v].price = base + v * 10000;
  }
  in.fields = PF_VARIANTS;
  finish(a, &in, r, i);
  *out = in;
}

static void make_clothing(ps_arena_t *a, rng_t *r, int i, product_in_t *out) {
  product_in_t in = {0};
  const char *brand = PICK(r, cloth_brands);
  int g = (int)(rng_next(r) % N(garments));
  const char *adj = PICK(r, cloth_adjs), *material = PICK(r, materials);
  const char *colour = PICK(r, cloth_colours), *fit = PICK(r, fits);
  in.kind = "clothing";
  in.brand = brand;
  in.category = garments[g].category;
  in.sku = ps_arena_sprintf(a, "CL-%.3s-%05d", brand, i);
  in.name = ps_arena_sprintf(a, "%s %s %s", brand, adj, garments[g].name);
  in.attributes = ps_arena_sprintf(
      a, "{\"material\":\"%s\",\"colour\":\"%s\",\"fit\":\"%s\",\"care\":\"%s\"}", material,
      colour, fit, rnd(r, 0, 1) ? "machine wash 30C" : "hand wash");
  in.description = ps_arena_sprintf(
      a, "A %s-fit %s %s in %s %s, made by %s to last for years.", fit, adj,
      garments[g].name, colour, material, brand);
  in.price = (int64_t)rnd(r, 15, 220) * 100 - 1;
  /* Sizes are variants: each has its own SKU and stock. */
  int lo = rnd(r, 0, 1), hi = rnd(r, 4, 5);
  in.nvariants = (size_t)(hi - lo + 1);
  in.variants = ps_arena_alloc(a, in.nvariants * sizeof(variant_in_t));
  for (int v = lo; v <= hi; v++) {
    variant_in_t *vi = &in.variants[v - lo];
    vi->sku = ps_arena_sprintf(a, "%s-%s", in.sku, sizes[v]);
    vi->attributes = ps_arena_sprintf(a, "{\"size\":\"%s\"}", sizes[v]);
    vi->stock = rnd(r, 0, 6) == 0 ? 0 : rnd(r, 1, 60);
    vi->price = -1;
  }
  in.fields = PF_VARIANTS;
  finish(a, &in, r, i);
  *out = in;
}

static void make_food(ps_arena_t *a, rng_t *r, int i, product_in_t *out) {
  product_in_t in = {0};
  const char *brand = PICK(r, food_brands);
  int f = (int)(rng_next(r) % N(foods));
  const char *flavour = PICK(r, flavours);
  in.kind = "food";
  in.brand = brand;
  in.category = foods[f].category;
  in.sku = ps_arena_sprintf(a, "FD-%.3s-%05d", brand, i);
  in.name = ps_arena_sprintf(a, "%s %s %s %d g", brand, flavour, foods[f].name, foods[f].grams);
  json_t *ingredients = json_array();
  for (int k = 0; k < 3; k++)
    if (foods[f].base[k][0]) json_array_append_new(ingredients, json_string(foods[f].base[k]));
  if (rnd(r, 0, 1)) json_array_append_new(ingredients, json_string(PICK(r, extras)));
  char *ing = ps_json_dump(a, ingredients);
  json_decref(ingredients);
  int kcal = rnd(r, foods[f].kcal_lo, foods[f].kcal_hi);
  int shelf = rnd(r, foods[f].shelf_lo, foods[f].shelf_hi);
  in.attributes = ps_arena_sprintf(
      a,
      "{\"shelf_life\":%d,\"calories\":%d,\"ingredients\":%s,\"weight\":%d,\"vegan\":%s,"
      "\"organic\":%s}",
      shelf, kcal, ing, foods[f].grams, rnd(r, 0, 2) ? "true" : "false",
      strcmp(flavour, "Organic") == 0 ? "true" : "false");
  in.description = ps_arena_sprintf(
      a, "%s %s from %s: %d kcal per 100 g, keeps for %d days unopened.", flavour,
      foods[f].name, brand, kcal, shelf);
  in.price = (int64_t)rnd(r, 1, 30) * 50 + 49;
  in.stock = rnd(r, 0, 14) == 0 ? 0 : rnd(r, 5, 800);
  finish(a, &in, r, i);
  *out = in;
}

int product_demo_load(product_store_t *s, int n, uint32_t seed) {
  int rc;
  for (size_t i = 0; i < N(categories); i++)
    if ((rc = s->ops->category_put(s, categories[i].slug, categories[i].name,
                                   categories[i].parent)))
      return rc;
  rng_t r = {seed};
  ps_arena_t a;
  ps_arena_init(&a);
  enum { BATCH = 100 };
  product_in_t batch[BATCH];
  const char *ids[BATCH];
  rc = 0;
  for (int i = 0; i < n && !rc; i += BATCH) {
    int k = 0;
    for (; k < BATCH && i + k < n; k++) {
      /* Three kinds in even thirds. */
      switch ((i + k) % 3) {
        case 0: make_phone(&a, &r, i + k, &batch[k]); break;
        case 1: make_clothing(&a, &r, i + k, &batch[k]); break;
        default: make_food(&a, &r, i + k, &batch[k]); break;
      }
      ids[k] = ps_uuid_v4(&a);
    }
    rc = s->ops->product_create_many(s, &a, ids, batch, (size_t)k, 0);
    ps_arena_reset(&a);
  }
  ps_arena_reset(&a);
  return rc;
}
