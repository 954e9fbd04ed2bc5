/* SPDX-License-Identifier: MIT */
/* flowgmm tests — the "csv" dataset plugin, loaded through the registry as the runner does. */
#include "datasets-common.h"

static FgDataset *
load_csv (const char *path, GError **error)
{
  return ds_load ("csv", error, "path", path, NULL);
}

static void
assert_row (const FgDataPart *part, gsize i, const float *want, gsize n)
{
  const float *row = fg_tensor_row (&part->x, i);
  g_assert_cmpuint (fg_tensor_cols (&part->x), ==, n);
  for (gsize j = 0; j < n; j++)
    g_assert_cmpfloat (row[j], ==, want[j]);
}

static void
test_names_and_mapping (void)
{
  g_autofree char *path = ds_write_text ("iris-like.csv",
                                         "sepal,petal,\"species\",weight\n"
                                         "5.1,1.4,virginica,3\n"
                                         "4.9,1.3,setosa,-2.5e1\n"
                                         "6.0, 4.5 ,versicolor,0\n"
                                         "5.0,1.5,setosa,1e-3\n");
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = ds_load ("csv", &error, "path", path, "label", "species", NULL);
  const FgDataPart *train;

  g_assert_no_error (error);
  train = fg_dataset_get_part (ds, FG_PART_TRAIN);
  g_assert_cmpuint (train->n, ==, 4);
  g_assert_cmpuint (fg_dataset_get_n_classes (ds), ==, 3);
  /* names in sorted order */
  g_assert_cmpstr (fg_dataset_get_class_name (ds, 0), ==, "setosa");
  g_assert_cmpstr (fg_dataset_get_class_name (ds, 1), ==, "versicolor");
  g_assert_cmpstr (fg_dataset_get_class_name (ds, 2), ==, "virginica");
  g_assert_cmpint (train->y[0], ==, 2);
  g_assert_cmpint (train->y[1], ==, 0);
  g_assert_cmpint (train->y[2], ==, 1);
  g_assert_cmpint (train->y[3], ==, 0);
  assert_row (train, 1, (const float[]){ 4.9f, 1.3f, -25.0f }, 3);
  assert_row (train, 2, (const float[]){ 6.0f, 4.5f, 0.0f }, 3);
  assert_row (train, 3, (const float[]){ 5.0f, 1.5f, 0.001f }, 3);
  /* the mapping is reported */
  g_assert_nonnull (strstr (fg_dataset_get_note (ds), "0=setosa 1=versicolor 2=virginica"));
  g_assert_nonnull (strstr (fg_dataset_get_note (ds), "column 'species'"));
  g_assert_cmpuint (fg_dataset_get_sample_shape (ds)->ndim, ==, 1);
  g_assert_cmpuint (fg_dataset_get_dim (ds), ==, 3);

  /* class_names fixes the order of name labels */
  {
    g_autoptr (FgDataset) ds2 = ds_load ("csv", &error, "path", path, "label", "2",
                                         "class_names", "virginica, versicolor,setosa", NULL);
    g_assert_no_error (error);
    g_assert_cmpint (fg_dataset_get_part (ds2, FG_PART_TRAIN)->y[0], ==, 0);
    g_assert_cmpint (fg_dataset_get_part (ds2, FG_PART_TRAIN)->y[1], ==, 2);
  }
  /* ... and every label must be among them */
  {
    g_autoptr (FgDataset) ds3 = ds_load ("csv", &error, "path", path, "label", "species",
                                         "class_names", "setosa,virginica", NULL);
    g_assert_null (ds3);
    ds_assert_error (error, FG_ERROR_DATA, "iris-like.csv:4: label 'versicolor' is not among",
                     NULL);
  }
}

static void
test_index_labels_and_columns (void)
{
  g_autofree char *path = ds_write_text ("plain.csv",
                                         "1,10,11,12,13\n"
                                         "0,20,21,22,23\n"
                                         "2,30,31,32,33\n"
                                         "-1,40,41,42,43\n");
  g_autoptr (GError) error = NULL;
  const FgDataPart *train;
  g_autoptr (FgDataset) ds = ds_load ("csv", &error, "path", path, "label", "0", "columns",
                                      "3-4, 1", NULL);
  g_assert_no_error (error);
  train = fg_dataset_get_part (ds, FG_PART_TRAIN);
  g_assert_cmpuint (train->n, ==, 4); /* the first row is data: no header */
  g_assert_cmpuint (fg_dataset_get_n_classes (ds), ==, 3);
  g_assert_cmpint (train->y[0], ==, 1);
  g_assert_cmpint (train->y[3], ==, -1); /* unlabeled */
  assert_row (train, 0, (const float[]){ 12, 13, 10 }, 3);
  assert_row (train, 2, (const float[]){ 32, 33, 30 }, 3);
  g_assert_null (fg_dataset_get_note (ds));

  /* a negative index counts from the end; the default is the last column */
  {
    g_autoptr (FgDataset) d2 = ds_load ("csv", &error, "path", path, "labels", "names", NULL);
    g_assert_no_error (error);
    /* last column as names: 13 23 33 43 -> numeric order */
    g_assert_cmpuint (fg_dataset_get_n_classes (d2), ==, 4);
    g_assert_cmpstr (fg_dataset_get_class_name (d2, 3), ==, "43");
    assert_row (fg_dataset_get_part (d2, FG_PART_TRAIN), 1, (const float[]){ 0, 20, 21, 22 }, 4);
  }
  /* class names for index labels */
  {
    g_autoptr (FgDataset) d3 = ds_load ("csv", &error, "path", path, "label", "-5",
                                        "class_names", "a,b", NULL);
    g_assert_null (d3);
    ds_assert_error (error, FG_ERROR_DATA, "plain.csv:3: label 2 is outside the 2 classes", NULL);
    g_clear_error (&error);
    d3 = ds_load ("csv", &error, "path", path, "label", "0", "class_names", "a,b,c", NULL);
    g_assert_no_error (error);
    g_assert_cmpstr (fg_dataset_get_class_name (d3, 2), ==, "c");
    g_assert_nonnull (strstr (fg_dataset_get_note (d3), "0=a 1=b 2=c"));
  }
  /* bad column keys */
  {
    static const struct {
      const char *key, *value, *expect;
    } cases[] = {
      { "label", "9", "column 9 does not exist: the file has 5 columns" },
      { "label", "species", "'species' is given by name but the file has no header row" },
      { "columns", "0,1", "column 0 is the label column" },
      { "columns", "1,2-3,3", "column 3 is listed twice" },
      { "columns", "3-1", "'3-1' is not a range" },
    };
    for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
      {
        g_autoptr (GError) e = NULL;
        g_autoptr (FgDataset) d = ds_load ("csv", &e, "path", path, "label",
                                           strcmp (cases[i].key, "label") == 0 ? cases[i].value
                                                                               : "0",
                                           strcmp (cases[i].key, "columns") == 0 ? "columns"
                                                                                 : "max_rows",
                                           strcmp (cases[i].key, "columns") == 0 ? cases[i].value
                                                                                 : "0",
                                           NULL);
        g_assert_null (d);
        ds_assert_error (e, FG_ERROR_INVALID_PARAM, "plain.csv:1: ", cases[i].expect, NULL);
      }
  }
}

/* Every cell parses to exactly (float) g_ascii_strtod (cell). */
static void
test_float_exact (void)
{
  const gsize rows = 20000, cols = 12;
  g_autoptr (GString) text = g_string_sized_new (rows * cols * 16);
  g_autoptr (GPtrArray) cells = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *path = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = NULL;
  const FgDataPart *train;
  FgRng rng;
  gsize mismatches = 0;

  fg_rng_init (&rng, 42, 0);
  for (gsize i = 0; i < rows; i++)
    {
      g_string_append_printf (text, "%d", (int) (i % 3));
      for (gsize j = 0; j < cols; j++)
        {
          char buf[96];
          double v = fg_rng_normal (&rng) * pow (10.0, (double) fg_rng_below (&rng, 20) - 10.0);
          switch (j)
            {
            case 0: g_snprintf (buf, sizeof buf, "%.9g", (double) (float) v); break;
            case 1: g_snprintf (buf, sizeof buf, "%.17g", v); break;
            case 2: g_snprintf (buf, sizeof buf, "%.3f", v); break;
            case 3: g_snprintf (buf, sizeof buf, "%.18e", v); break; /* numpy.savetxt */
            case 4: g_snprintf (buf, sizeof buf, "%" G_GINT64_FORMAT,
                                (gint64) fg_rng_next_u64 (&rng) >> fg_rng_below (&rng, 60));
                    break;
            case 5:
              {
                /* a float32 rounding midpoint, written with 17 to 25 digits */
                float f = (float) v;
                double mid = ((double) f + (double) nextafterf (f, INFINITY)) / 2.0;
                g_snprintf (buf, sizeof buf, "%.*g", 17 + (int) fg_rng_below (&rng, 9), mid);
                break;
              }
            case 6: g_snprintf (buf, sizeof buf, "%.7g", v); break;
            case 7:
              {
                /* 19-20 significant digits, no exponent */
                guint64 m = fg_rng_next_u64 (&rng) % G_GUINT64_CONSTANT (10000000000000000000);
                g_snprintf (buf, sizeof buf, "%s%" G_GUINT64_FORMAT ".%u", (i & 1) ? "-" : "", m,
                            (guint) fg_rng_below (&rng, 100));
                break;
              }
            case 8: g_snprintf (buf, sizeof buf, "%.6e", v * 1e25); break;
            case 9: g_snprintf (buf, sizeof buf, "%.5g", v * 1e-30); break; /* subnormal */
            case 10: g_snprintf (buf, sizeof buf, "%.2f", v); break;
            default:
              {
                /* near a midpoint but only 19 digits: the fast path's guard must catch these */
                float f = (float) (v * 1e-3);
                double mid = ((double) f + (double) nextafterf (f, INFINITY)) / 2.0;
                g_snprintf (buf, sizeof buf, "%.18e", mid);
                break;
              }
            }
          g_string_append_c (text, ',');
          g_string_append (text, buf);
          g_ptr_array_add (cells, g_strdup (buf));
        }
      g_string_append_c (text, '\n');
    }
  path = ds_write ("numbers.csv", text->str, text->len);
  ds = ds_load ("csv", &error, "path", path, "label", "0", NULL);
  g_assert_no_error (error);
  train = fg_dataset_get_part (ds, FG_PART_TRAIN);
  g_assert_cmpuint (train->n, ==, rows);
  for (gsize i = 0; i < rows; i++)
    for (gsize j = 0; j < cols; j++)
      {
        const char *cell = g_ptr_array_index (cells, i * cols + j);
        float want = (float) g_ascii_strtod (cell, NULL);
        float got = fg_tensor_row (&train->x, i)[j];
        if (memcmp (&want, &got, sizeof want) != 0)
          {
            if (mismatches++ < 10)
              g_printerr ("cell '%s': got %.9g, strtod gives %.9g\n", cell, got, want);
          }
      }
  g_assert_cmpuint (mismatches, ==, 0);
}

static void
test_sklearn_header (void)
{
  g_autofree char *ok = ds_write_text ("sk.csv",
                                       "4,3,alpha,beta\n"
                                       "1,2,3,0\n"
                                       "4,5,6,1\n"
                                       "7,8,9,1\n"
                                       "1,1,1,0\n");
  g_autofree char *short_file = ds_write_text ("sk-short.csv",
                                               "5,3,alpha,beta\n"
                                               "1,2,3,0\n"
                                               "4,5,6,1\n");
  g_autofree char *bad_label = ds_write_text ("sk-label.csv",
                                              "2,3,alpha,beta\n"
                                              "1,2,3,0\n"
                                              "4,5,6,2\n");
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = ds_load ("csv", &error, "path", ok, "header", "sklearn", NULL);
  g_assert_no_error (error);
  g_assert_cmpuint (fg_dataset_get_part (ds, FG_PART_TRAIN)->n, ==, 4);
  g_assert_cmpuint (fg_dataset_get_dim (ds), ==, 3);
  g_assert_cmpstr (fg_dataset_get_class_name (ds, 1), ==, "beta");
  g_assert_cmpstr (fg_dataset_get_note (ds), ==, "classes: 0=alpha 1=beta");

  g_clear_pointer (&ds, fg_dataset_unref);
  ds = ds_load ("csv", &error, "path", short_file, "header", "sklearn", NULL);
  ds_assert_error (error, FG_ERROR_DATA, "sk-short.csv: the header announces 5 samples but the "
                   "file has 2 data rows", NULL);
  g_clear_error (&error);
  ds = ds_load ("csv", &error, "path", bad_label, "header", "sklearn", NULL);
  ds_assert_error (error, FG_ERROR_DATA, "sk-label.csv:3: label 2 is outside the 2 classes",
                   "named by the header", NULL);
}

static void
test_parts (void)
{
  g_autofree char *train = ds_write_text ("tr.csv", "a,b,y\n1,2,cat\n3,4,dog\n5,6,cat\n");
  g_autofree char *val = ds_write_text ("va.csv", "y,b,a\ndog,20,10\n");
  g_autofree char *test = ds_write_text ("te.csv", "a,b,y\n7,8,ant\n9,9,dog\n");
  g_autofree char *wide = ds_write_text ("wide.csv", "a,b,c,y\n7,8,9,dog\n");
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = ds_load ("csv", &error, "path", train, "validation_path", val,
                                      "test_path", test, "label", "y", NULL);
  const FgDataPart *v, *t;
  g_assert_no_error (error);
  /* names from every part, sorted: ant cat dog */
  g_assert_cmpuint (fg_dataset_get_n_classes (ds), ==, 3);
  g_assert_cmpstr (fg_dataset_get_class_name (ds, 0), ==, "ant");
  g_assert_cmpint (fg_dataset_get_part (ds, FG_PART_TRAIN)->y[0], ==, 1);
  v = fg_dataset_get_part (ds, FG_PART_VAL);
  t = fg_dataset_get_part (ds, FG_PART_TEST);
  g_assert_cmpuint (v->n, ==, 1);
  g_assert_cmpint (v->y[0], ==, 2);
  /* the validation file's own header: columns by position of its header (label dropped) */
  assert_row (v, 0, (const float[]){ 20, 10 }, 2);
  g_assert_cmpint (t->y[0], ==, 0);
  assert_row (t, 1, (const float[]){ 9, 9 }, 2);

  g_clear_pointer (&ds, fg_dataset_unref);
  ds = ds_load ("csv", &error, "path", train, "test_path", wide, "label", "y", NULL);
  ds_assert_error (error, FG_ERROR_DATA, "wide.csv:1: 3 feature columns, but the training file "
                   "has 2", NULL);
}

static void
test_missing_values (void)
{
  g_autofree char *path = ds_write_text ("miss.csv",
                                         "x1,x2,y\n"
                                         "1,2,0\n"
                                         "3,,1\n"
                                         "NA,6,0\n"
                                         "7,8,1\n");
  g_autofree char *test = ds_write_text ("miss-test.csv", "x1,x2,y\n?,1,0\n");
  g_autofree char *text = ds_write_text ("text.csv", "x1,x2,y\n1,2,0\n3,abc,1\n");
  g_autofree char *nan = ds_write_text ("nan.csv", "x1,x2,y\n1,2,0\nNaN,4,1\n");
  g_autofree char *inf = ds_write_text ("inf.csv", "x1,x2,y\n1,2,0\n3,-inf,1\n");
  g_autofree char *huge = ds_write_text ("huge.csv", "x1,x2,y\n1,2,0\n3,1e39,1\n");
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = NULL;
  const FgDataPart *p;

  ds = load_csv (path, &error);
  ds_assert_error (error, FG_ERROR_DATA, "miss.csv:3:2: missing value (empty cell) (column 'x2')",
                   "set missing = drop, mean or zero", NULL);
  g_clear_error (&error);
  ds = load_csv (text, &error);
  ds_assert_error (error, FG_ERROR_DATA, "text.csv:3:2: non-numeric cell 'abc' (column 'x2')",
                   NULL);
  g_clear_error (&error);
  ds = load_csv (nan, &error);
  ds_assert_error (error, FG_ERROR_DATA, "nan.csv:3:1: missing value 'NaN' (column 'x1')", NULL);
  g_clear_error (&error);
  ds = load_csv (inf, &error);
  ds_assert_error (error, FG_ERROR_DATA, "inf.csv:3:2: non-finite value '-inf'", NULL);
  g_clear_error (&error);
  ds = load_csv (huge, &error);
  ds_assert_error (error, FG_ERROR_DATA, "huge.csv:3:2: value outside the float32 range '1e39'",
                   NULL);
  g_clear_error (&error);

  ds = ds_load ("csv", &error, "path", path, "missing", "drop", NULL);
  g_assert_no_error (error);
  p = fg_dataset_get_part (ds, FG_PART_TRAIN);
  g_assert_cmpuint (p->n, ==, 2);
  assert_row (p, 1, (const float[]){ 7, 8 }, 2);
  g_clear_pointer (&ds, fg_dataset_unref);

  ds = ds_load ("csv", &error, "path", path, "test_path", test, "missing", "mean", NULL);
  g_assert_no_error (error);
  p = fg_dataset_get_part (ds, FG_PART_TRAIN);
  g_assert_cmpuint (p->n, ==, 4);
  /* column means over the present training cells: x1 (1+3+7)/3, x2 (2+6+8)/3 */
  assert_row (p, 1, (const float[]){ 3, (float) (16.0 / 3.0) }, 2);
  assert_row (p, 2, (const float[]){ (float) (11.0 / 3.0), 6 }, 2);
  /* the test part is imputed with the training means */
  assert_row (fg_dataset_get_part (ds, FG_PART_TEST), 0, (const float[]){ (float) (11.0 / 3.0), 1 },
              2);
  g_clear_pointer (&ds, fg_dataset_unref);

  ds = ds_load ("csv", &error, "path", path, "missing", "zero", NULL);
  g_assert_no_error (error);
  assert_row (fg_dataset_get_part (ds, FG_PART_TRAIN), 2, (const float[]){ 0, 6 }, 2);
}

static void
test_bad_input (void)
{
  static const struct {
    const char *name, *text, *key, *value;
    gint code;
    const char *expect;
  } cases[] = {
    { "empty.csv", "", NULL, NULL, FG_ERROR_DATA, "empty.csv: empty file" },
    { "blank.csv", "\n\n\r\n", NULL, NULL, FG_ERROR_DATA, "blank.csv: empty file" },
    { "header-only.csv", "a,b,c\n", NULL, NULL, FG_ERROR_DATA, "header-only.csv: no data rows" },
    { "ragged.csv", "a,b,c\n1,2,0\n3,4,1\n5,6\n", NULL, NULL, FG_ERROR_DATA,
      "ragged.csv:4: 2 fields, but the header has 3 (a ragged row" },
    { "ragged2.csv", "1,2,0\n3,4,5,1\n", NULL, NULL, FG_ERROR_DATA,
      "ragged2.csv:2: 4 fields, but the first row has 3" },
    { "one-class.csv", "a,y\n1,0\n2,0\n3,-1\n", NULL, NULL, FG_ERROR_DATA,
      "one-class.csv: csv: the training labels hold only one class" },
    { "neg.csv", "a,y\n1,0\n2,1\n3,-3\n", NULL, NULL, FG_ERROR_DATA,
      "neg.csv:4: label -3 is out of range" },
    { "quote.csv", "a,y\n1,0\n2,1\n3\"x,1\n", NULL, NULL, FG_ERROR_DATA,
      "quote.csv:4: malformed CSV at byte offset 13" },
    { "open-quote.csv", "a,y\n1,0\n2,\"1\n", NULL, NULL, FG_ERROR_DATA,
      "open-quote.csv:3: malformed CSV at the end of the file" },
    { "one-col.csv", "a\n1\n2\n", NULL, NULL, FG_ERROR_DATA,
      "one-col.csv:1: the first row has 1 column" },
    { "float-label.csv", "a,y\n1,0\n2,1.5\n", "labels", "index", FG_ERROR_DATA,
      "float-label.csv:3: label '1.5' is not a class index" },
    { "empty-label.csv", "a,y\n1,0\n2,\n", NULL, NULL, FG_ERROR_DATA,
      "empty-label.csv:3:2: empty label cell" },
    { "delim.csv", "a,y\n1,0\n", "delimiter", "ab", FG_ERROR_INVALID_PARAM,
      "key 'delimiter' = 'ab'" },
    { "shape.csv", "a,b,y\n1,2,0\n3,4,1\n", "image_shape", "1,3,1", FG_ERROR_DATA,
      "key 'image_shape' = '1,3,1': " },
    { "noheader-sk.csv", "a,b,y\n1,2,0\n", "header", "sklearn", FG_ERROR_DATA,
      "noheader-sk.csv:1: not a scikit-learn header" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *path = ds_write_text (cases[i].name, cases[i].text);
      g_autoptr (GError) error = NULL;
      g_autoptr (FgDataset) ds = ds_load ("csv", &error, "path", path,
                                          cases[i].key ? cases[i].key : "max_rows",
                                          cases[i].value ? cases[i].value : "0", NULL);
      g_assert_null (ds);
      ds_assert_error (error, cases[i].code, cases[i].expect, NULL);
    }
  /* A NUL byte inside a numeric cell is not part of a number. */
  {
    static const char text[] = "a,y\n1,0\n2\0junk,1\n3,1\n";
    g_autofree char *path = ds_write ("nul.csv", text, sizeof text - 1);
    g_autoptr (GError) error = NULL;
    g_autoptr (FgDataset) ds = load_csv (path, &error);
    g_assert_null (ds);
    ds_assert_error (error, FG_ERROR_DATA, "nul.csv:3:1: non-numeric cell", NULL);
  }
  /* Nor inside a label cell: "1\0junk" is not the label "1" (class names are C strings). */
  {
    static const char text[] = "a,y\n1,0\n2,1\0junk\n3,1\n";
    g_autofree char *path = ds_write ("nul-label.csv", text, sizeof text - 1);
    g_autoptr (GError) error = NULL;
    g_autoptr (FgDataset) ds = load_csv (path, &error);
    g_assert_null (ds);
    ds_assert_error (error, FG_ERROR_DATA, "nul-label.csv:3:2: ", "NUL byte in the label cell",
                     NULL);
  }
  /* One stray huge label would make the class count (and per-class arrays) enormous. */
  {
    g_autofree char *path = ds_write_text ("huge-label.csv", "a,y\n1,0\n2,2147483646\n3,1\n");
    g_autoptr (GError) error = NULL;
    g_autoptr (FgDataset) ds = load_csv (path, &error);
    g_assert_null (ds);
    ds_assert_error (error, FG_ERROR_DATA, "huge-label.csv: ", NULL);
    g_assert_nonnull (strstr (error->message, "label 2147483646 (training part, row 2"));
  }
  /* A 2 MB field: refused at once (it took libcsv's 128-byte growth minutes to read). */
  {
    g_autoptr (GString) text = g_string_new ("a,y\n1,0\n");
    g_autofree char *path = NULL;
    g_autoptr (GError) error = NULL;
    g_autoptr (FgDataset) ds = NULL;
    for (guint i = 0; i < (2u << 20); i++)
      g_string_append_c (text, '1');
    g_string_append (text, ",1\n");
    path = ds_write ("long-field.csv", text->str, text->len);
    ds = load_csv (path, &error);
    g_assert_null (ds);
    ds_assert_error (error, FG_ERROR_DATA, "long-field.csv:3:1: a field of 2097152 bytes", NULL);
  }
  /* a missing file */
  {
    g_autoptr (GError) error = NULL;
    g_autofree char *path = ds_path ("absent.csv");
    g_autoptr (FgDataset) ds = load_csv (path, &error);
    ds_assert_error (error, FG_ERROR_IO, "absent.csv", NULL);
  }
}

/* The split refuses a labeled size larger than a class allows, naming the class. */
static void
test_split_too_many_labels (void)
{
  g_autofree char *path = ds_write_text ("small-class.csv",
                                         "x,y\n1,ant\n2,ant\n3,ant\n4,bee\n5,bee\n6,bee\n"
                                         "7,cat\n8,cat\n9,ant\n10,bee\n");
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = ds_load ("csv", &error, "path", path, "label", "y", NULL);
  g_autoptr (FgParams) sp = fg_params_new (fg_split_param_specs ());
  g_autoptr (FgSplitData) d = NULL;
  g_assert_no_error (error);
  g_assert_true (fg_params_set (sp, "labeled_per_class", "3", &error));
  g_assert_true (fg_params_set (sp, "test", "1", &error));
  g_assert_true (fg_params_set (sp, "data_seed", "0", &error));
  d = fg_split_data_new (ds, sp, 0, &error);
  g_assert_null (d);
  ds_assert_error (error, FG_ERROR_DATA, "'labeled_per_class' = 3", "of class 2 ('cat')",
                   "available", NULL);
}

static void
test_dialects (void)
{
  g_autoptr (GError) error = NULL;
  /* MiniBooNE_PID.txt style: a count line, then runs of spaces, leading spaces */
  g_autofree char *ws = ds_write_text ("ws.txt",
                                       "2 1\n"
                                       "  2.59413E+00  3.86388E-01 \t 1\n"
                                       " -9.99000E+02\t\t 1.0  0\n"
                                       "\n"
                                       "  1  2  1  \n");
  g_autofree char *tsv = ds_write_text ("data.tsv", "x\ty z\tlabel\n1.5\t2\tb\n3\t4\ta\n");
  g_autofree char *crlf = ds_write_text ("crlf.csv",
                                         "\xEF\xBB\xBF" "a,b,y\r\n1,2,0\r\n\r\n3,\"4\",1\r\n5,x,0\r\n");
  g_autofree char *quoted = ds_write_text ("quoted.csv",
                                           "\"a\",\"the \"\"b\"\"\",y\n\" 1 \",2,\"x,y\"\n3,4,z\n");
  g_autoptr (FgDataset) ds = ds_load ("csv", &error, "path", ws, "delimiter", "whitespace",
                                      "skip_rows", "1", NULL);
  const FgDataPart *p;
  g_assert_no_error (error);
  p = fg_dataset_get_part (ds, FG_PART_TRAIN);
  g_assert_cmpuint (p->n, ==, 3);
  assert_row (p, 0, (const float[]){ 2.59413f, 0.386388f }, 2);
  assert_row (p, 1, (const float[]){ -999.0f, 1.0f }, 2);
  g_assert_cmpint (p->y[1], ==, 0);
  g_clear_pointer (&ds, fg_dataset_unref);

  ds = ds_load ("csv", &error, "path", tsv, "delimiter", "tab", "label", "label", NULL);
  g_assert_no_error (error);
  g_assert_cmpstr (fg_dataset_get_class_name (ds, 0), ==, "a");
  assert_row (fg_dataset_get_part (ds, FG_PART_TRAIN), 0, (const float[]){ 1.5f, 2 }, 2);
  g_clear_pointer (&ds, fg_dataset_unref);

  /* CR LF, a byte order mark and a blank line: the error names the physical line */
  ds = load_csv (crlf, &error);
  ds_assert_error (error, FG_ERROR_DATA, "crlf.csv:5:2: non-numeric cell 'x' (column 'b')", NULL);
  g_clear_error (&error);
  ds = ds_load ("csv", &error, "path", crlf, "missing", "drop", NULL);
  g_assert_no_error (error);
  assert_row (fg_dataset_get_part (ds, FG_PART_TRAIN), 1, (const float[]){ 3, 4 }, 2);
  g_clear_pointer (&ds, fg_dataset_unref);

  ds = ds_load ("csv", &error, "path", quoted, "label", "y", NULL);
  g_assert_no_error (error);
  g_assert_cmpstr (fg_dataset_get_class_name (ds, 0), ==, "x,y");
  assert_row (fg_dataset_get_part (ds, FG_PART_TRAIN), 0, (const float[]){ 1, 2 }, 2);
  g_assert_nonnull (strstr (fg_dataset_get_note (ds), "column 'y'"));
}

static void
test_gzip_and_large (void)
{
  /* ~3 MB: several 1 MiB chunks; an error deep in the file names its line */
  const gsize rows = 60000;
  g_autoptr (GString) text = g_string_new ("f0,f1,f2,f3,f4,label\n");
  g_autofree char *path = NULL, *gz = NULL, *bad = NULL, *badgz = NULL, *trunc = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = NULL, dz = NULL;
  const FgDataPart *a, *b;

  for (gsize i = 0; i < rows; i++)
    g_string_append_printf (text, "%.6f,%" G_GSIZE_FORMAT ",%.3e,-%" G_GSIZE_FORMAT ".5,0.%"
                            G_GSIZE_FORMAT ",%d\n",
                            i * 0.001, i, i * 1e-7, i % 97, i, (int) (i % 4));
  path = ds_write ("big.csv", text->str, text->len);
  gz = ds_gzip (path);
  ds = load_csv (path, &error);
  g_assert_no_error (error);
  dz = load_csv (gz, &error);
  g_assert_no_error (error);
  a = fg_dataset_get_part (ds, FG_PART_TRAIN);
  b = fg_dataset_get_part (dz, FG_PART_TRAIN);
  g_assert_cmpuint (a->n, ==, rows);
  g_assert_cmpuint (b->n, ==, rows);
  g_assert_cmpmem (a->x.data, rows * 5 * sizeof (float), b->x.data, rows * 5 * sizeof (float));
  g_assert_cmpfloat (fg_tensor_row (&a->x, 54321)[1], ==, 54321.0f);
  g_assert_cmpint (a->y[54321], ==, 54321 % 4);
  g_clear_pointer (&dz, fg_dataset_unref);

  /* max_rows */
  dz = ds_load ("csv", &error, "path", gz, "max_rows", "100", NULL);
  g_assert_no_error (error);
  g_assert_cmpuint (fg_dataset_get_part (dz, FG_PART_TRAIN)->n, ==, 100);

  /* an error at row 50001 (line 50002) */
  {
    gsize off = 0;
    for (gsize line = 1; line < 50002; line++)
      off = (gsize) (strchr (text->str + off, '\n') - text->str) + 1;
    text->str[off] = 'z';
  }
  bad = ds_write ("bad.csv", text->str, text->len);
  g_clear_pointer (&ds, fg_dataset_unref);
  ds = load_csv (bad, &error);
  ds_assert_error (error, FG_ERROR_DATA, "bad.csv:50002:1: non-numeric cell 'z0.000000'", NULL);
  g_clear_error (&error);
  badgz = ds_gzip (bad);
  ds = load_csv (badgz, &error);
  ds_assert_error (error, FG_ERROR_DATA, "bad.csv.gz:50002:1: non-numeric cell", NULL);
  g_clear_error (&error);

  /* a truncated gzip file */
  {
    g_autofree char *data = NULL;
    gsize len;
    g_assert_true (g_file_get_contents (gz, &data, &len, NULL));
    trunc = ds_write ("trunc.csv.gz", data, len / 2);
    ds = load_csv (trunc, &error);
    ds_assert_error (error, FG_ERROR_CORRUPT, "trunc.csv.gz: truncated compressed file", NULL);
  }
}

static void
test_image_shape (void)
{
  g_autofree char *path = ds_write_text ("img.csv",
                                         "0,1,2,3,4,5,0\n6,7,8,9,10,11,1\n");
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = ds_load ("csv", &error, "path", path, "image_shape", "1,2,3", NULL);
  const FgSampleShape *s;
  g_assert_no_error (error);
  s = fg_dataset_get_sample_shape (ds);
  g_assert_cmpuint (s->ndim, ==, 3);
  g_assert_cmpuint (s->dims[1], ==, 2);
  g_assert_cmpuint (fg_dataset_get_part (ds, FG_PART_TRAIN)->x.ndim, ==, 4);
}

static FgDataset *
fuzz_load (const char *path, GError **error)
{
  return ds_load ("csv", error, "path", path, "label", "y", "missing", "error", NULL);
}

static FgDataset *
fuzz_load_drop (const char *path, GError **error)
{
  return ds_load ("csv", error, "path", path, "missing", "drop", "labels", "names", NULL);
}

static void
test_fuzz (void)
{
  const char *text = "a,b,\"c\",y\n1.5,2,3e2,x\n-4,5.25,6,w\n7,8,\"9\",x\n0.1,0.2,0.3,w\n"
                     "1e-3,NA,7,w\n";
  const char *valid = "a,b,\"c\",y\n1.5,2,3e2,x\n-4,5.25,6,w\n7,8,\"9\",x\n0.1,0.2,0.3,w\n";
  g_autofree char *path = ds_path ("fuzz.csv");
  g_autofree char *gzsrc = ds_write_text ("fuzz-src.csv", valid);
  g_autofree char *gz = ds_gzip (gzsrc);
  g_autofree char *gzdata = NULL;
  gsize gzlen;
  guint ok;

  ok = ds_fuzz (path, (const guint8 *) valid, strlen (valid), fuzz_load, 1000, 400, 1);
  g_assert_cmpuint (ok, >, 0);
  ds_fuzz (path, (const guint8 *) text, strlen (text), fuzz_load_drop, 1000, 400, 2);
  g_assert_true (g_file_get_contents (gz, &gzdata, &gzlen, NULL));
  g_free (path);
  path = ds_path ("fuzz.csv.gz");
  ds_fuzz (path, (const guint8 *) gzdata, gzlen, fuzz_load, 1000, 300, 3);
}

/* ---- real files ------------------------------------------------------------------------------ */

#define SKLEARN_DATA "/usr/lib/python3/dist-packages/sklearn/datasets/data"

static void
test_real_sklearn (void)
{
  static const struct {
    const char *file;
    gsize n, d;
    guint K;
    const char *class0;
    gsize count0;
  } sets[] = {
    { "iris.csv", 150, 4, 3, "setosa", 50 },
    { "wine_data.csv", 178, 13, 3, "class_0", 59 },
    { "breast_cancer.csv", 569, 30, 2, "malignant", 212 },
  };
  gboolean any = FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (sets); i++)
    {
      g_autofree char *path = g_build_filename (SKLEARN_DATA, sets[i].file, NULL);
      g_autoptr (GError) error = NULL;
      g_autoptr (FgDataset) ds = NULL;
      gsize counts[3];
      if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
        continue;
      any = TRUE;
      ds = ds_load ("csv", &error, "path", path, "header", "sklearn", NULL);
      g_assert_no_error (error);
      g_assert_cmpuint (fg_dataset_get_part (ds, FG_PART_TRAIN)->n, ==, sets[i].n);
      g_assert_cmpuint (fg_dataset_get_dim (ds), ==, sets[i].d);
      g_assert_cmpuint (fg_dataset_get_n_classes (ds), ==, sets[i].K);
      g_assert_cmpstr (fg_dataset_get_class_name (ds, 0), ==, sets[i].class0);
      ds_count_labels (fg_dataset_get_part (ds, FG_PART_TRAIN), sets[i].K, counts);
      g_assert_cmpuint (counts[0], ==, sets[i].count0);
    }
  {
    /* digits: gzip, no header, 64 pixel values 0..16 and the label last */
    g_autofree char *path = g_build_filename (SKLEARN_DATA, "digits.csv.gz", NULL);
    if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
      {
        g_autoptr (GError) error = NULL;
        g_autoptr (FgDataset) ds = ds_load ("csv", &error, "path", path, "header", "none",
                                            "image_shape", "1,8,8", NULL);
        gsize counts[10];
        g_assert_no_error (error);
        any = TRUE;
        g_assert_cmpuint (fg_dataset_get_part (ds, FG_PART_TRAIN)->n, ==, 1797);
        g_assert_cmpuint (fg_dataset_get_n_classes (ds), ==, 10);
        ds_count_labels (fg_dataset_get_part (ds, FG_PART_TRAIN), 10, counts);
        g_assert_cmpuint (counts[0], ==, 178);
        g_assert_cmpfloat (fg_tensor_row (&fg_dataset_get_part (ds, FG_PART_TRAIN)->x, 0)[2],
                           ==, 5.0f);
      }
  }
  if (!any)
    g_test_skip ("scikit-learn's bundled CSVs (Debian python3-sklearn) are not installed");
}

static void
test_real_toy (void)
{
  g_autofree char *path = ds_shared ("flowgmm-toy/8gauss.csv");
  g_autoptr (GError) error = NULL;
  g_autoptr (FgDataset) ds = NULL;
  gsize counts[3], unknown;
  if (path == NULL)
    return;
  ds = ds_load ("csv", &error, "path", path, "label", "label", NULL);
  g_assert_no_error (error);
  g_assert_cmpuint (fg_dataset_get_part (ds, FG_PART_TRAIN)->n, ==, 1000);
  unknown = ds_count_labels (fg_dataset_get_part (ds, FG_PART_TRAIN), 3, counts);
  g_assert_cmpuint (unknown, ==, 981);
  g_assert_cmpuint (counts[0], ==, 6);
  g_assert_cmpuint (counts[1], ==, 6);
  g_assert_cmpuint (counts[2], ==, 7);
}

int
main (int argc, char **argv)
{
  int rc;
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/csv/names-and-mapping", test_names_and_mapping);
  g_test_add_func ("/csv/index-labels-and-columns", test_index_labels_and_columns);
  g_test_add_func ("/csv/float-exact", test_float_exact);
  g_test_add_func ("/csv/sklearn-header", test_sklearn_header);
  g_test_add_func ("/csv/parts", test_parts);
  g_test_add_func ("/csv/missing-values", test_missing_values);
  g_test_add_func ("/csv/bad-input", test_bad_input);
  g_test_add_func ("/csv/dialects", test_dialects);
  g_test_add_func ("/csv/split-too-many-labels", test_split_too_many_labels);
  g_test_add_func ("/csv/gzip-and-large", test_gzip_and_large);
  g_test_add_func ("/csv/image-shape", test_image_shape);
  g_test_add_func ("/csv/fuzz", test_fuzz);
  g_test_add_func ("/csv/real/sklearn", test_real_sklearn);
  g_test_add_func ("/csv/real/toy", test_real_toy);
  rc = g_test_run ();
  ds_cleanup ();
  return rc;
}
