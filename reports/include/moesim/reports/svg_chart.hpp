// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <limits>
#include <string>
#include <vector>

/** A small inline-SVG chart kit for the HTML report: horizontal bar charts (grouped or stacked),
 *  a scatter plot with a polyline front, and a line chart. No scripts, no fonts or images from the
 *  network. Every chart has a title, labelled axes with units, ticks and a legend, and every drawn
 *  value carries its exact number as `data-value` (or `data-x`/`data-y`) plus `data-unit`, in the
 *  unit shown on the axis, so a test can compare the chart with the store. */
namespace moesim::reports::svg {

/** The Okabe–Ito colour-blind-safe palette (Okabe & Ito 2008, "Color Universal Design",
 *  jfly.uni-koeln.de/color): black, orange, sky blue, bluish green, yellow, blue, vermillion,
 *  reddish purple. */
inline constexpr const char* kOkabeIto[8] = {"#000000", "#E69F00", "#56B4E9", "#009E73",
                                             "#F0E442", "#0072B2", "#D55E00", "#CC79A7"};

/** Axis ticks: `values` from `lo` to `hi` (both multiples of `step`), printed with `decimals`
 *  decimals. */
struct Ticks {
  double lo = 0.0;
  double hi = 1.0;
  double step = 0.2;
  int decimals = 1;
  std::vector<double> values;
};
/** "Nice" ticks (steps of 1, 2 or 5 × 10^k: the nice-number method of Heckbert, "Nice numbers
 *  for graph labels", Graphics Gems, 1990) covering [lo, hi] with about `target` intervals.
 *  lo == hi gives ±10 % around the value (0..1 for zero); non-finite bounds give 0..1. */
Ticks nice_ticks(double lo, double hi, int target = 5);
/** A tick value printed with `decimals` decimals (scientific above 1e7). */
std::string tick_label(double v, int decimals);

/** One series of a bar chart. `key` goes into data-series; `label` into the legend. */
struct BarSeries {
  std::string key;
  std::string label;
  std::string colour;
};

/** Horizontal bar chart: one band per category, one bar (grouped) or one segment (stacked) per
 *  series. values[s][c] is series s of category c, in `unit`; non-finite values are not drawn (a
 *  stacked negative segment is drawn with zero width, its data-value kept). */
struct BarChart {
  std::string id;                            ///< id of the <svg> element
  std::string title;
  std::string value_axis_label;              ///< e.g. "energy (MWh)"
  std::string unit;                          ///< data-unit of every bar, e.g. "MWh"
  std::vector<std::string> category_keys;    ///< data-category (stable identifier)
  std::vector<std::string> category_labels;  ///< shown on the axis (long ones shortened, full in the tooltip)
  std::vector<BarSeries> series;
  std::vector<std::vector<double>> values;   ///< [series][category]
  bool stacked = false;
  int width_px = 960;
};
/** The chart as an <svg> element. Throws std::invalid_argument when values' shape does not match
 *  series × categories. */
std::string bar_chart(const BarChart& chart);

/** One point of a scatter plot. */
struct ScatterPoint {
  std::string key;    ///< data-key (e.g. the run id)
  std::string label;  ///< shown next to the point
  double x = 0.0;
  double y = 0.0;
  bool on_front = false;
};
/** How an axis maps values: linear, logarithmic (base 10), or log when every value is positive and
 *  the largest is at least kLogRangeRatio times the smallest (placements can differ by orders of
 *  magnitude, and a linear axis then hides all but the largest). */
enum class Scale { linear, log, automatic };
inline constexpr double kLogRangeRatio = 30.0;

/** Log-axis ticks: the powers of ten covering [lo, hi] (both > 0), with 2 and 5 times them when
 *  the range spans at most two decades. */
Ticks log_ticks(double lo, double hi);

/** Scatter plot; the points with on_front are drawn filled and joined, in x order, by a polyline.
 *  Labels are moved down where they would overlap an earlier one. */
struct ScatterChart {
  std::string id;
  std::string title;
  std::string x_axis_label;
  std::string y_axis_label;
  std::string x_unit;
  std::string y_unit;
  std::string front_label = "Pareto front";
  std::string other_label = "dominated";
  std::vector<ScatterPoint> points;
  Scale x_scale = Scale::automatic;
  Scale y_scale = Scale::automatic;
  int width_px = 960;
  int height_px = 460;
};
std::string scatter_chart(const ScatterChart& chart);

/** A further series of a line chart, drawn on the same axes after the first. */
struct LineSeries {
  std::string key;     ///< data-series
  std::string label;   ///< legend
  std::string colour;
  std::vector<double> x;
  std::vector<double> y;
};

/** A marked point of a line chart (e.g. a percentile on a CDF): a ring at (x, y) with a label;
 *  data-key, data-x, data-y carry it exactly. */
struct LineMarker {
  std::string key;
  std::string label;
  double x = 0.0;
  double y = 0.0;
};

/** Line chart of one series y(x), optionally with further series, marked points and a shaded range
 *  of x. */
struct LineChart {
  std::string id;
  std::string title;
  std::string x_axis_label;
  std::string y_axis_label;
  std::string x_unit;
  std::string y_unit;
  std::string series_label;
  std::string colour = kOkabeIto[5];
  std::vector<double> x;
  std::vector<double> y;
  int width_px = 960;
  int height_px = 380;
  std::string series_key;  ///< data-series of the first series; series_label when empty
  /** Each y holds from its x to the next x (values averaged over intervals that start at x); the
   *  last one for as long as the interval before it. Otherwise the points are joined by lines. */
  bool steps = false;
  /** With steps: where every series' last step ends (the end of its last interval, which may be shorter than the one
   *  before it) when finite. */
  double steps_end_x = std::numeric_limits<double>::quiet_NaN();
  std::vector<LineSeries> more_series;
  std::vector<LineMarker> markers;
  std::string markers_label;  ///< legend entry of the markers
  /** Fixed y range (e.g. 0 to 100 % for a CDF) when both are finite; else from the data. */
  double y_min = std::numeric_limits<double>::quiet_NaN();
  double y_max = std::numeric_limits<double>::quiet_NaN();
  /** A shaded range of x (e.g. a measurement window) when both are finite; data-x0/data-x1 carry it. */
  double band_x0 = std::numeric_limits<double>::quiet_NaN();
  double band_x1 = std::numeric_limits<double>::quiet_NaN();
  std::string band_label;
};
/** Throws std::invalid_argument when x and y differ in length (of any series). */
std::string line_chart(const LineChart& chart);

/** The viridis colour map (van der Walt and Smith for matplotlib, 2015; CC0, bids.github.io/colormap): perceptually
 *  uniform, readable in grey scale and by the common colour-vision deficiencies. Ten stops (its samples at 0, 1/9, ...,
 *  1), interpolated linearly in sRGB. `t` in [0, 1] (clamped); "#rrggbb". */
std::string viridis(double t);

/** A heat map: one cell per (row, column) coloured by its value on viridis from the smallest value (dark) to the
 *  largest (yellow), the value printed in the cell, a colour bar with the range. Non-finite values are cells with no
 *  point (drawn hatched-grey, no data-value). Each cell carries data-row, data-column, data-value (exact) and
 *  data-unit. */
struct HeatMap {
  std::string id;
  std::string title;
  std::string row_axis_label;     ///< e.g. "cluster.count"
  std::string column_axis_label;  ///< e.g. "parallelism.data"
  std::string value_label;        ///< e.g. "training time (days)"
  std::string unit;               ///< data-unit of every cell
  std::vector<std::string> row_labels;
  std::vector<std::string> column_labels;
  std::vector<std::vector<double>> values;  ///< [row][column]
  /** Cell text: the value with this many significant digits. */
  int significant = 3;
  int width_px = 960;
};
/** Throws std::invalid_argument when values' shape does not match rows x columns. */
std::string heat_map(const HeatMap& chart);

}  // namespace moesim::reports::svg
