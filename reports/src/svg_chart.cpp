// SPDX-License-Identifier: Apache-2.0
#include "moesim/reports/svg_chart.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <stdexcept>

#include <fmt/format.h>

#include "moesim/reports/markup.hpp"

namespace moesim::reports::svg {

namespace {

using Attrs = XmlWriter::Attributes;

constexpr const char* kSvgNs = "http://www.w3.org/2000/svg";
constexpr const char* kFont = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif";
constexpr int kTitleFontPx = 16;
constexpr int kLabelFontPx = 13;
constexpr int kTickFontPx = 12;
constexpr int kValueFontPx = 11;
// Average advance of a glyph at 13 px, rounded up for DejaVu Sans (the widest common sans-serif); used only to
// size margins and place legend entries, never to crop text.
constexpr double kCharWidthPx = 8.0;
constexpr std::size_t kMaxCategoryChars = 44;
constexpr const char* kGridColour = "#d9d9d9";
constexpr const char* kAxisColour = "#333333";
constexpr const char* kTextColour = "#1a1a1a";

std::string px(double v) { return fmt::format("{:.2f}", v); }

/** Heckbert's nice number: a value of 1, 2, 5 or 10 x 10^k near x (rounded, or at least x). */
double nice_number(double x, bool round) {
  const double exponent = std::floor(std::log10(x));
  const double fraction = x / std::pow(10.0, exponent);
  double nice = 10.0;
  if (round) {
    if (fraction < 1.5) nice = 1.0;
    else if (fraction < 3.0) nice = 2.0;
    else if (fraction < 7.0) nice = 5.0;
  } else {
    if (fraction <= 1.0) nice = 1.0;
    else if (fraction <= 2.0) nice = 2.0;
    else if (fraction <= 5.0) nice = 5.0;
  }
  return nice * std::pow(10.0, exponent);
}

std::string shorten(const std::string& s, std::size_t max_chars) {
  // Count UTF-8 code points, cut at a code-point boundary.
  std::size_t count = 0, cut = s.size();
  for (std::size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (count == max_chars - 1) cut = i;
      ++count;
    }
  }
  if (count <= max_chars) return s;
  return s.substr(0, cut) + "\xE2\x80\xA6";  // ellipsis
}

std::size_t glyphs(const std::string& s) {
  std::size_t n = 0;
  for (char c : s)
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  return n;
}

void open_svg(XmlWriter& w, const std::string& id, const std::string& title, int width, int height) {
  w.open("svg", {{"xmlns", kSvgNs},
                 {"id", id},
                 {"class", "chart"},
                 {"width", std::to_string(width)},
                 {"height", std::to_string(height)},
                 {"viewBox", fmt::format("0 0 {} {}", width, height)},
                 {"role", "img"},
                 {"aria-labelledby", id + "-title"},
                 {"font-family", kFont},
                 {"fill", kTextColour}});
  w.element("title", {{"id", id + "-title"}}, title);
  w.empty("rect", {{"x", "0"}, {"y", "0"}, {"width", std::to_string(width)}, {"height", std::to_string(height)}, {"fill", "#ffffff"}});
  w.element("text", {{"x", "12"}, {"y", "24"}, {"font-size", std::to_string(kTitleFontPx)}, {"font-weight", "bold"}, {"class", "chart-title"}},
            title);
}

/** Legend entries left to right from (x, y); `marker` draws each entry's symbol at (x, y-centre). */
struct LegendEntry {
  std::string label;
  std::string kind;  // "box", "line", "dot", "ring", "line-dot"
  std::string colour;
};
double legend_entry_width(const LegendEntry& e) { return 22 + kCharWidthPx * static_cast<double>(glyphs(e.label)) + 24; }

constexpr double kLegendX = 16.0;
constexpr double kLegendY = 50.0;
constexpr double kLegendRowPx = 20.0;

/** Rows the legend needs when entries flow left to right from kLegendX and wrap before max_x. */
int legend_rows(const std::vector<LegendEntry>& entries, double max_x) {
  int rows = 1;
  double x = kLegendX;
  for (const auto& e : entries) {
    const double w = legend_entry_width(e);
    if (x > kLegendX && x + w > max_x) {
      ++rows;
      x = kLegendX;
    }
    x += w;
  }
  return rows;
}

/** Legend entries flowing left to right from (kLegendX, kLegendY), wrapping before max_x. */
void legend(XmlWriter& w, const std::vector<LegendEntry>& entries, double max_x) {
  w.open("g", {{"class", "legend"}});
  double x = kLegendX, y = kLegendY;
  for (const auto& e : entries) {
    if (x > kLegendX && x + legend_entry_width(e) > max_x) {
      x = kLegendX;
      y += kLegendRowPx;
    }
    const double cy = y - 4;
    if (e.kind == "box") {
      w.empty("rect", {{"x", px(x)}, {"y", px(cy - 6)}, {"width", "12"}, {"height", "12"}, {"fill", e.colour}, {"stroke", kAxisColour}, {"stroke-width", "0.8"}});
    } else if (e.kind == "line" || e.kind == "line-dot") {
      w.empty("line", {{"x1", px(x - 2)}, {"y1", px(cy)}, {"x2", px(x + 16)}, {"y2", px(cy)}, {"stroke", e.colour}, {"stroke-width", "2.5"}});
      if (e.kind == "line-dot")
        w.empty("circle", {{"cx", px(x + 7)}, {"cy", px(cy)}, {"r", "5"}, {"fill", e.colour}, {"stroke", "#000000"}, {"stroke-width", "1"}});
    } else if (e.kind == "ring") {
      w.empty("circle", {{"cx", px(x + 7)}, {"cy", px(cy)}, {"r", "5"}, {"fill", "#ffffff"}, {"stroke", e.colour}, {"stroke-width", "2"}});
    }
    w.element("text", {{"x", px(x + 22)}, {"y", px(y)}, {"font-size", std::to_string(kLabelFontPx)}}, e.label);
    x += legend_entry_width(e);
  }
  w.close("g");
}

/** Ticks plus how values map onto the axis (linear or log10). */
struct Axis {
  Ticks ticks;
  bool log = false;
  /** Position of v along the axis, 0 at ticks.lo and 1 at ticks.hi. */
  double frac(double v) const {
    if (log) return (std::log10(v) - std::log10(ticks.lo)) / (std::log10(ticks.hi) - std::log10(ticks.lo));
    return (v - ticks.lo) / (ticks.hi - ticks.lo);
  }
};

/** The label of tick `v` of axis `a`: a linear axis shows every tick with the step's decimals; a log axis each
 *  tick with its own (0.01, 0.1, 1, 10, 100 -- not 100.000 because the axis starts at 0.001). */
std::string axis_tick_label(const Axis& a, double v) {
  if (!a.log || !(v > 0.0)) return tick_label(v, a.ticks.decimals);
  const int decimals = std::max(0, -static_cast<int>(std::floor(std::log10(v) + 1e-9)));
  return tick_label(v, decimals);
}

/** Gridlines and tick labels of a horizontal value axis spanning [x0, x1] under a plot [y0, y1]. */
void x_axis(XmlWriter& w, const Axis& a, double x0, double x1, double y0, double y1, const std::string& label) {
  const Ticks& t = a.ticks;
  auto sx = [&](double v) { return x0 + a.frac(v) * (x1 - x0); };
  w.open("g", {{"class", "axis x-axis"}});
  for (double v : t.values) {
    const double x = sx(v);
    w.empty("line", {{"x1", px(x)}, {"y1", px(y0)}, {"x2", px(x)}, {"y2", px(y1)}, {"stroke", kGridColour}, {"stroke-width", "1"}});
    w.empty("line", {{"x1", px(x)}, {"y1", px(y1)}, {"x2", px(x)}, {"y2", px(y1 + 5)}, {"stroke", kAxisColour}, {"stroke-width", "1"}});
    w.element("text", {{"x", px(x)}, {"y", px(y1 + 19)}, {"font-size", std::to_string(kTickFontPx)}, {"text-anchor", "middle"}, {"class", "tick"}},
              axis_tick_label(a, v));
  }
  w.empty("line", {{"x1", px(x0)}, {"y1", px(y1)}, {"x2", px(x1)}, {"y2", px(y1)}, {"stroke", kAxisColour}, {"stroke-width", "1.2"}});
  w.element("text", {{"x", px((x0 + x1) / 2)}, {"y", px(y1 + 42)}, {"font-size", std::to_string(kLabelFontPx)}, {"text-anchor", "middle"}, {"class", "axis-label"}},
            label);
  w.close("g");
}

/** Gridlines and tick labels of a vertical value axis at x0 for a plot [x0, x1] x [y0 (top), y1 (bottom)]. */
void y_axis(XmlWriter& w, const Axis& a, double x0, double x1, double y0, double y1, const std::string& label) {
  const Ticks& t = a.ticks;
  auto sy = [&](double v) { return y1 - a.frac(v) * (y1 - y0); };
  w.open("g", {{"class", "axis y-axis"}});
  for (double v : t.values) {
    const double y = sy(v);
    w.empty("line", {{"x1", px(x0)}, {"y1", px(y)}, {"x2", px(x1)}, {"y2", px(y)}, {"stroke", kGridColour}, {"stroke-width", "1"}});
    w.empty("line", {{"x1", px(x0 - 5)}, {"y1", px(y)}, {"x2", px(x0)}, {"y2", px(y)}, {"stroke", kAxisColour}, {"stroke-width", "1"}});
    w.element("text", {{"x", px(x0 - 8)}, {"y", px(y + 4)}, {"font-size", std::to_string(kTickFontPx)}, {"text-anchor", "end"}, {"class", "tick"}},
              axis_tick_label(a, v));
  }
  w.empty("line", {{"x1", px(x0)}, {"y1", px(y0)}, {"x2", px(x0)}, {"y2", px(y1)}, {"stroke", kAxisColour}, {"stroke-width", "1.2"}});
  const double cy = (y0 + y1) / 2;
  w.element("text", {{"x", "18"}, {"y", px(cy)}, {"font-size", std::to_string(kLabelFontPx)}, {"text-anchor", "middle"},
                     {"transform", fmt::format("rotate(-90 18 {})", px(cy))}, {"class", "axis-label"}},
            label);
  w.close("g");
}

/** Width in px of the widest tick label of `a` (to size the left margin of a vertical axis). */
double tick_label_width(const Axis& a) {
  std::size_t n = 1;
  for (double v : a.ticks.values) n = std::max(n, axis_tick_label(a, v).size());
  return kCharWidthPx * static_cast<double>(n);
}

}  // namespace

Ticks nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) {
    lo = 0.0;
    hi = 1.0;
  }
  if (lo > hi) std::swap(lo, hi);
  if (lo == hi) {
    const double half = lo == 0.0 ? 0.5 : 0.1 * std::fabs(lo);
    if (lo == 0.0) {
      hi = 1.0;
    } else {
      lo -= half;
      hi += half;
    }
  }
  target = std::max(1, target);
  Ticks t;
  const double range = nice_number(hi - lo, false);
  t.step = nice_number(range / target, true);
  t.lo = std::floor(lo / t.step) * t.step;
  t.hi = std::ceil(hi / t.step) * t.step;
  t.decimals = 0;
  for (int d = 0; d <= 12; ++d) {
    const double scaled = t.step * std::pow(10.0, d);
    if (std::fabs(scaled - std::round(scaled)) < 1e-6 * std::max(1.0, scaled)) {
      t.decimals = d;
      break;
    }
    t.decimals = d;
  }
  const int n = static_cast<int>(std::llround((t.hi - t.lo) / t.step));
  for (int i = 0; i <= n; ++i) {
    double v = t.lo + i * t.step;
    if (std::fabs(v) < 1e-9 * t.step) v = 0.0;
    t.values.push_back(v);
  }
  return t;
}

std::string tick_label(double v, int decimals) {
  if (std::fabs(v) >= 1e7) return fmt::format("{:.3g}", v);
  std::string s = fmt::format("{:.{}f}", v, std::max(0, decimals));
  if (s.find_first_not_of("-0.") == std::string::npos) s = "0";  // no "-0"
  return s;
}

namespace {
Axis scatter_axis(Scale scale, double lo, double hi, int target) {
  const bool log = lo > 0.0 && (scale == Scale::log || (scale == Scale::automatic && hi >= kLogRangeRatio * lo));
  if (log) return {log_ticks(lo, hi), true};
  const double pad = 0.08 * (hi - lo);
  double a = lo - pad, b = hi + pad;
  if (lo >= 0.0 && a < 0.0) a = 0.0;  // non-negative data: no negative axis
  return {nice_ticks(a, b, target), false};
}
}  // namespace

Ticks log_ticks(double lo, double hi) {
  Ticks t;
  if (!(lo > 0.0) || !(hi > 0.0) || !std::isfinite(lo) || !std::isfinite(hi)) return nice_ticks(0.0, 1.0);
  if (lo > hi) std::swap(lo, hi);
  int klo = static_cast<int>(std::floor(std::log10(lo)));
  int khi = static_cast<int>(std::ceil(std::log10(hi)));
  if (khi == klo) ++khi;
  t.lo = std::pow(10.0, klo);
  t.hi = std::pow(10.0, khi);
  t.step = 0.0;
  t.decimals = std::max(0, -klo);
  for (int k = klo; k <= khi; ++k) {
    const double p = std::pow(10.0, k);
    t.values.push_back(p);
    if (khi - klo <= 2 && k < khi) {
      t.values.push_back(2 * p);
      t.values.push_back(5 * p);
    }
  }
  return t;
}

std::string bar_chart(const BarChart& c) {
  const std::size_t nc = c.category_keys.size(), ns = c.series.size();
  if (c.category_labels.size() != nc || c.values.size() != ns)
    throw std::invalid_argument("bar_chart " + c.id + ": labels/values do not match categories x series");
  for (const auto& v : c.values)
    if (v.size() != nc) throw std::invalid_argument("bar_chart " + c.id + ": a series has the wrong number of values");

  std::vector<std::string> labels;
  std::size_t longest = 4;
  for (const auto& l : c.category_labels) {
    labels.push_back(shorten(l, kMaxCategoryChars));
    longest = std::max(longest, glyphs(labels.back()));
  }
  double vmin = 0.0, vmax = 0.0;
  for (std::size_t k = 0; k < nc; ++k) {
    double sum = 0.0;
    for (std::size_t s = 0; s < ns; ++s) {
      const double v = c.values[s][k];
      if (!std::isfinite(v)) continue;
      if (c.stacked) {
        sum += std::max(0.0, v);
      } else {
        vmin = std::min(vmin, v);
        vmax = std::max(vmax, v);
      }
    }
    if (c.stacked) vmax = std::max(vmax, sum);
  }
  const Axis axis{nice_ticks(vmin, vmax, 6), false};
  const Ticks& t = axis.ticks;

  const double left = std::clamp(16.0 + kCharWidthPx * static_cast<double>(longest), 110.0, 360.0);
  const double right = 110.0;
  std::vector<LegendEntry> entries;
  for (const auto& s : c.series) entries.push_back({s.label, "box", s.colour});
  const double top = 66.0 + kLegendRowPx * (legend_rows(entries, c.width_px - 10.0) - 1);
  const double bar_h = c.stacked ? 20.0 : 16.0;
  const double gap = 12.0;
  const double band = c.stacked ? bar_h + gap : static_cast<double>(ns) * (bar_h + 2.0) + gap;
  const double plot_h = std::max(1.0, static_cast<double>(nc)) * band;
  const int height = static_cast<int>(top + plot_h + 58.0);
  const double x0 = left, x1 = c.width_px - right;
  auto sx = [&](double v) { return x0 + (v - t.lo) / (t.hi - t.lo) * (x1 - x0); };

  XmlWriter w;
  open_svg(w, c.id, c.title, c.width_px, height);
  legend(w, entries, c.width_px - 10.0);
  x_axis(w, axis, x0, x1, top, top + plot_h, c.value_axis_label);

  w.open("g", {{"class", "bars"}});
  for (std::size_t k = 0; k < nc; ++k) {
    const double band_top = top + static_cast<double>(k) * band;
    const double label_y = band_top + (band - gap) / 2 + gap / 2 + 4;
    w.open("text", {{"x", px(x0 - 8)}, {"y", px(label_y)}, {"font-size", std::to_string(kLabelFontPx)}, {"text-anchor", "end"},
                    {"class", "category"}, {"data-category", c.category_keys[k]}});
    w.element("title", {}, c.category_labels[k]);
    w.text(labels[k]);
    w.close("text");
    double acc = 0.0, total = 0.0;
    bool any = false;
    for (std::size_t s = 0; s < ns; ++s) {
      const double v = c.values[s][k];
      double a = 0.0, b = 0.0, y = 0.0;
      if (c.stacked) {
        const double len = std::isfinite(v) ? std::max(0.0, v) : 0.0;
        a = acc;
        b = acc + len;
        acc = b;
        y = band_top + gap / 2;
        if (std::isfinite(v)) {
          total += v;
          any = true;
        }
      } else {
        a = std::isfinite(v) ? std::min(0.0, v) : 0.0;
        b = std::isfinite(v) ? std::max(0.0, v) : 0.0;
        y = band_top + gap / 2 + static_cast<double>(s) * (bar_h + 2.0);
      }
      const double xa = sx(a), xb = sx(b);
      w.open("rect", {{"x", px(xa)}, {"y", px(y)}, {"width", px(std::max(0.0, xb - xa))}, {"height", px(bar_h)},
                      {"fill", c.series[s].colour}, {"stroke", kAxisColour}, {"stroke-width", "0.6"}, {"class", "bar"},
                      {"data-series", c.series[s].key}, {"data-category", c.category_keys[k]},
                      {"data-value", format_exact(v)}, {"data-unit", c.unit}});
      w.element("title", {}, fmt::format("{} \xE2\x80\x94 {}: {} {}", c.category_labels[k], c.series[s].label, format_value(v), c.unit));
      w.close("rect");
      if (!c.stacked && std::isfinite(v)) {
        w.element("text", {{"x", px(sx(std::max(0.0, v)) + 5)}, {"y", px(y + bar_h - 4)}, {"font-size", std::to_string(kValueFontPx)},
                           {"class", "value-label"}},
                  format_value(v));
      }
    }
    if (c.stacked && any) {
      w.element("text", {{"x", px(sx(acc) + 5)}, {"y", px(band_top + gap / 2 + bar_h - 5)}, {"font-size", std::to_string(kValueFontPx)},
                         {"class", "value-label"}},
                fmt::format("{} {}", format_value(total), c.unit));
    }
  }
  // Zero line over the bars.
  w.empty("line", {{"x1", px(sx(0.0))}, {"y1", px(top)}, {"x2", px(sx(0.0))}, {"y2", px(top + plot_h)}, {"stroke", kAxisColour}, {"stroke-width", "1.2"}});
  w.close("g");
  w.close("svg");
  return w.str();
}

std::string scatter_chart(const ScatterChart& c) {
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  std::vector<const ScatterPoint*> pts;
  for (const auto& p : c.points) {
    if (!std::isfinite(p.x) || !std::isfinite(p.y)) continue;
    pts.push_back(&p);
    xmin = std::min(xmin, p.x);
    xmax = std::max(xmax, p.x);
    ymin = std::min(ymin, p.y);
    ymax = std::max(ymax, p.y);
  }
  if (pts.empty()) xmin = xmax = ymin = ymax = 0.0;
  const Axis ax = scatter_axis(c.x_scale, xmin, xmax, 6), ay = scatter_axis(c.y_scale, ymin, ymax, 5);

  const double left = 44.0 + tick_label_width(ay) + 12.0;
  const double right = 40.0, top = 70.0, bottom = 60.0;
  const double x0 = left, x1 = c.width_px - right, y0 = top, y1 = c.height_px - bottom;
  auto sx = [&](double v) { return x0 + ax.frac(v) * (x1 - x0); };
  auto sy = [&](double v) { return y1 - ay.frac(v) * (y1 - y0); };

  XmlWriter w;
  open_svg(w, c.id, c.title, c.width_px, c.height_px);
  legend(w, {{c.front_label, "line-dot", kOkabeIto[6]}, {c.other_label, "ring", kOkabeIto[5]}}, c.width_px - 10.0);
  x_axis(w, ax, x0, x1, y0, y1, ax.log ? c.x_axis_label + ", log scale" : c.x_axis_label);
  y_axis(w, ay, x0, x1, y0, y1, ay.log ? c.y_axis_label + ", log scale" : c.y_axis_label);

  std::vector<const ScatterPoint*> front;
  for (const auto* p : pts)
    if (p->on_front) front.push_back(p);
  std::sort(front.begin(), front.end(), [](const ScatterPoint* a, const ScatterPoint* b) { return a->x != b->x ? a->x < b->x : a->y > b->y; });
  if (!front.empty()) {
    std::string points, keys;
    for (const auto* p : front) {
      points += (points.empty() ? "" : " ") + px(sx(p->x)) + "," + px(sy(p->y));
      keys += (keys.empty() ? "" : " ") + p->key;
    }
    w.empty("polyline", {{"points", points}, {"fill", "none"}, {"stroke", kOkabeIto[6]}, {"stroke-width", "2.5"},
                         {"class", "pareto-front"}, {"data-keys", keys}});
  }
  const bool label_all = pts.size() <= 16;
  struct Box {
    double x0, x1, y0, y1;
  };
  struct Placed {
    double baseline;
    bool flip;
    bool moved;
  };
  // Every marker is an obstacle from the start (radius 6 + its stroke), so a label never covers another point
  // and a leader line never seems to belong to the point a label sits on.
  std::vector<Box> placed;
  for (const auto* p : pts) {
    const double cx = sx(p->x), cy = sy(p->y);
    placed.push_back({cx - 8.0, cx + 8.0, cy - 8.0, cy + 8.0});
  }
  // Labels go next to their point; one that would overlap a marker or an earlier label moves up or down by a
  // line at a time (nearest free slot first) and gets a leader line to its point.
  std::vector<const ScatterPoint*> by_y = pts;
  std::stable_sort(by_y.begin(), by_y.end(), [&](const ScatterPoint* a, const ScatterPoint* b) { return sy(a->y) < sy(b->y); });
  std::map<const ScatterPoint*, Placed> labels;
  for (const auto* p : by_y) {
    if (!(label_all || p->on_front)) continue;
    const double cx = sx(p->x), cy = sy(p->y);
    const bool flip = cx > x0 + 0.72 * (x1 - x0);
    const double width = kCharWidthPx * 0.95 * static_cast<double>(glyphs(shorten(p->label, 32)));
    Box best{};
    double shift = 0.0;
    for (int k = 0; k <= 24; ++k) {
      shift = (k % 2 == 1 ? 1.0 : -1.0) * 15.0 * ((k + 1) / 2);
      const double gap = k == 0 ? 10.0 : 22.0;
      Box b{flip ? cx - gap - width : cx + gap, flip ? cx - gap : cx + gap + width, cy - 8 - 12 + shift, cy - 8 + 3 + shift};
      best = b;
      const bool hit = std::any_of(placed.begin(), placed.end(), [&](const Box& o) { return b.x0 < o.x1 && o.x0 < b.x1 && b.y0 < o.y1 && o.y0 < b.y1; });
      if (!hit && b.y0 >= y0 - 20 && b.y1 <= y1 + 30) break;
    }
    placed.push_back(best);
    labels[p] = {best.y1 - 3, flip, shift != 0.0};
  }
  w.open("g", {{"class", "points"}});
  for (const auto* p : pts) {
    const double cx = sx(p->x), cy = sy(p->y);
    Attrs a = {{"cx", px(cx)}, {"cy", px(cy)}, {"r", "6"}};
    if (p->on_front) {
      a.insert(a.end(), {{"fill", kOkabeIto[6]}, {"stroke", "#000000"}, {"stroke-width", "1"}});
    } else {
      a.insert(a.end(), {{"fill", "#ffffff"}, {"stroke", kOkabeIto[5]}, {"stroke-width", "2"}});
    }
    a.insert(a.end(), {{"class", "point"}, {"data-key", p->key}, {"data-label", p->label}, {"data-x", format_exact(p->x)},
                       {"data-y", format_exact(p->y)}, {"data-x-unit", c.x_unit}, {"data-y-unit", c.y_unit},
                       {"data-pareto", p->on_front ? "true" : "false"}});
    w.open("circle", a);
    w.element("title", {}, fmt::format("{}: {} {}, {} {}", p->label, format_value(p->x), c.x_unit, format_value(p->y), c.y_unit));
    w.close("circle");
    if (labels.count(p)) {
      const Placed& l = labels[p];
      const double gap = l.moved ? 22.0 : 10.0;
      const double tx = l.flip ? cx - gap : cx + gap;
      if (l.moved)
        w.empty("line", {{"x1", px(l.flip ? cx - 6 : cx + 6)}, {"y1", px(cy)}, {"x2", px(l.flip ? tx + 2 : tx - 2)}, {"y2", px(l.baseline - 4)},
                         {"stroke", "#7f7f7f"}, {"stroke-width", "0.8"}, {"class", "leader"}});
      w.element("text", {{"x", px(tx)}, {"y", px(l.baseline)}, {"font-size", std::to_string(kTickFontPx)},
                         {"text-anchor", l.flip ? "end" : "start"}, {"class", "point-label"}},
                shorten(p->label, 32));
    }
  }
  w.close("g");
  if (pts.empty()) {
    w.element("text", {{"x", px((x0 + x1) / 2)}, {"y", px((y0 + y1) / 2)}, {"font-size", std::to_string(kLabelFontPx)}, {"text-anchor", "middle"}},
              "no complete run to plot");
  }
  w.close("svg");
  return w.str();
}

std::string line_chart(const LineChart& c) {
  struct Drawn {
    std::string key;
    std::string label;
    std::string colour;
    const std::vector<double>* x;
    const std::vector<double>* y;
  };
  std::vector<Drawn> series = {{c.series_key.empty() ? c.series_label : c.series_key, c.series_label, c.colour, &c.x, &c.y}};
  for (const auto& m : c.more_series) series.push_back({m.key, m.label, m.colour, &m.x, &m.y});
  for (const auto& d : series)
    if (d.x->size() != d.y->size()) throw std::invalid_argument("line_chart " + c.id + ": x and y differ in length");
  // Right end of point i's step: the next x, or (last point) steps_end_x, else x plus the interval before it.
  auto step_end = [&c](const std::vector<double>& xs, std::size_t i) {
    double e = xs[i];
    if (i + 1 < xs.size()) e = xs[i + 1];
    else if (std::isfinite(c.steps_end_x) && c.steps_end_x > xs[i]) e = c.steps_end_x;
    else if (i >= 1) e = xs[i] + (xs[i] - xs[i - 1]);
    return std::isfinite(e) ? e : xs[i];
  };
  double xmin = 0.0, xmax = -INFINITY, ymin = 0.0, ymax = -INFINITY;
  std::size_t finite = 0;
  for (const auto& d : series) {
    for (std::size_t i = 0; i < d.x->size(); ++i) {
      const double x = (*d.x)[i], y = (*d.y)[i];
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      ++finite;
      xmin = std::min(xmin, x);
      xmax = std::max(xmax, c.steps ? step_end(*d.x, i) : x);
      ymin = std::min(ymin, y);
      ymax = std::max(ymax, y);
    }
  }
  if (finite == 0) xmax = ymax = 0.0;
  for (const auto& m : c.markers) {  // a marker off the data stays visible
    if (!std::isfinite(m.x) || !std::isfinite(m.y)) continue;
    xmin = std::min(xmin, m.x);
    xmax = std::max(xmax, m.x);
    ymin = std::min(ymin, m.y);
    ymax = std::max(ymax, m.y);
  }
  const bool band = std::isfinite(c.band_x0) && std::isfinite(c.band_x1);
  if (band) {
    xmin = std::min({xmin, c.band_x0, c.band_x1});
    xmax = std::max({xmax, c.band_x0, c.band_x1});
  }
  const bool fixed_y = std::isfinite(c.y_min) && std::isfinite(c.y_max) && c.y_max > c.y_min;
  const Axis tx{nice_ticks(xmin, xmax, 8), false};
  const Axis ty{fixed_y ? nice_ticks(c.y_min, c.y_max, 5) : nice_ticks(ymin, ymax * 1.05, 5), false};

  std::vector<LegendEntry> entries;
  for (const auto& d : series) entries.push_back({d.label, "line", d.colour});
  constexpr const char* kBandColour = "#56B4E9";  // Okabe–Ito sky blue, drawn translucent
  constexpr const char* kMarkerColour = "#D55E00";  // Okabe–Ito vermillion
  if (band) entries.push_back({c.band_label, "box", "#ddf0fb"});  // the band's colour as drawn
  if (!c.markers.empty()) entries.push_back({c.markers_label, "ring", kMarkerColour});
  const double left = 44.0 + tick_label_width(ty) + 12.0;
  const double right = 30.0, top = 70.0 + kLegendRowPx * (legend_rows(entries, c.width_px - 10.0) - 1), bottom = 60.0;
  const double x0 = left, x1 = c.width_px - right, y0 = top, y1 = c.height_px - bottom;
  auto sx = [&](double v) { return x0 + tx.frac(v) * (x1 - x0); };
  auto sy = [&](double v) { return y1 - ty.frac(v) * (y1 - y0); };

  XmlWriter w;
  open_svg(w, c.id, c.title, c.width_px, c.height_px);
  legend(w, entries, c.width_px - 10.0);
  x_axis(w, tx, x0, x1, y0, y1, c.x_axis_label);
  y_axis(w, ty, x0, x1, y0, y1, c.y_axis_label);
  if (band) {
    const double a = sx(std::min(c.band_x0, c.band_x1)), b = sx(std::max(c.band_x0, c.band_x1));
    w.open("rect", {{"x", px(a)}, {"y", px(y0)}, {"width", px(b - a)}, {"height", px(y1 - y0)}, {"fill", kBandColour}, {"fill-opacity", "0.15"},
                    {"class", "x-band"}, {"data-x0", format_exact(c.band_x0)}, {"data-x1", format_exact(c.band_x1)}, {"data-x-unit", c.x_unit}});
    w.element("title", {}, fmt::format("{}: {} to {} {}", c.band_label, format_value(c.band_x0), format_value(c.band_x1), c.x_unit));
    w.close("rect");
  }
  for (const auto& d : series) {
    std::string points, xs, ys;
    for (std::size_t i = 0; i < d.x->size(); ++i) {
      const double x = (*d.x)[i], y = (*d.y)[i];
      xs += (i ? " " : "") + format_exact(x);
      ys += (i ? " " : "") + format_exact(y);
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      points += (points.empty() ? "" : " ") + px(sx(x)) + "," + px(sy(y));
      if (c.steps) points += " " + px(sx(step_end(*d.x, i))) + "," + px(sy(y));
    }
    w.empty("polyline", {{"points", points}, {"fill", "none"}, {"stroke", d.colour}, {"stroke-width", "2"}, {"stroke-linejoin", "round"},
                         {"class", "series-line"}, {"data-series", d.key}, {"data-x", xs}, {"data-y", ys},
                         {"data-x-unit", c.x_unit}, {"data-y-unit", c.y_unit}});
  }
  if (!c.markers.empty()) {
    w.open("g", {{"class", "markers"}});
    for (const auto& m : c.markers) {
      if (!std::isfinite(m.x) || !std::isfinite(m.y)) continue;
      const double cx = sx(m.x), cy = sy(m.y);
      w.open("circle", {{"cx", px(cx)}, {"cy", px(cy)}, {"r", "5"}, {"fill", "#ffffff"}, {"stroke", kMarkerColour}, {"stroke-width", "2"},
                        {"class", "marker"}, {"data-key", m.key}, {"data-x", format_exact(m.x)}, {"data-y", format_exact(m.y)},
                        {"data-x-unit", c.x_unit}, {"data-y-unit", c.y_unit}});
      w.element("title", {}, m.label);
      w.close("circle");
      // Above and left of the point: on a rising curve (a CDF) that side is clear of the line.
      w.element("text", {{"x", px(cx - 8)}, {"y", px(cy - 7)}, {"font-size", std::to_string(kValueFontPx)}, {"text-anchor", "end"},
                         {"class", "marker-label"}},
                m.label);
    }
    w.close("g");
  }
  if (finite == 0) {
    w.element("text", {{"x", px((x0 + x1) / 2)}, {"y", px((y0 + y1) / 2)}, {"font-size", std::to_string(kLabelFontPx)}, {"text-anchor", "middle"}},
              "no data");
  }
  w.close("svg");
  return w.str();
}

}  // namespace moesim::reports::svg

namespace moesim::reports::svg {

std::string viridis(double t) {
  // viridis at ten evenly spaced samples, as R's viridisLite::viridis(10) lists them (the matplotlib map; CC0).
  static constexpr unsigned kStops[10] = {0x440154, 0x482878, 0x3E4A89, 0x31688E, 0x26828E,
                                          0x1F9E89, 0x35B779, 0x6DCD59, 0xB4DE2C, 0xFDE725};
  if (!std::isfinite(t)) t = 0.0;
  t = std::clamp(t, 0.0, 1.0);
  const double pos = t * 9.0;
  const int i = std::min(8, static_cast<int>(std::floor(pos)));
  const double f = pos - i;
  auto channel = [&](int shift) {
    const double a = static_cast<double>((kStops[i] >> shift) & 0xFF), b = static_cast<double>((kStops[i + 1] >> shift) & 0xFF);
    return static_cast<int>(std::lround(a + f * (b - a)));
  };
  return fmt::format("#{:02X}{:02X}{:02X}", channel(16), channel(8), channel(0));
}

std::string heat_map(const HeatMap& c) {
  const std::size_t nr = c.row_labels.size(), nc = c.column_labels.size();
  if (c.values.size() != nr) throw std::invalid_argument("heat_map " + c.id + ": values do not match the rows");
  for (const auto& row : c.values)
    if (row.size() != nc) throw std::invalid_argument("heat_map " + c.id + ": a row has the wrong number of values");
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& row : c.values)
    for (double v : row)
      if (std::isfinite(v)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
  const bool any = std::isfinite(lo);
  auto colour_of = [&](double v) { return viridis(any && hi > lo ? (v - lo) / (hi - lo) : 0.5); };

  std::size_t longest_row = glyphs(c.row_axis_label) / 2;
  std::vector<std::string> rows, cols;
  for (const auto& l : c.row_labels) {
    rows.push_back(shorten(l, kMaxCategoryChars));
    longest_row = std::max(longest_row, glyphs(rows.back()));
  }
  std::size_t longest_col = 1;
  for (const auto& l : c.column_labels) {
    cols.push_back(shorten(l, 24));
    longest_col = std::max(longest_col, glyphs(cols.back()));
  }
  const double left = std::clamp(24.0 + kCharWidthPx * static_cast<double>(longest_row), 90.0, 380.0);
  const double right = 150.0;  // colour bar and its labels
  const double top = 80.0;
  const double avail = c.width_px - left - right;
  const double cell_w = std::clamp(avail / std::max<std::size_t>(1, nc), 36.0, 140.0);
  const double cell_h = 30.0;
  // Column labels are written across when they fit the cell, else turned 45 degrees (room below for them).
  const bool turned = kCharWidthPx * static_cast<double>(longest_col) > cell_w - 6.0;
  const double label_room = turned ? 20.0 + 0.72 * kCharWidthPx * static_cast<double>(longest_col) : 24.0;
  const double plot_w = cell_w * static_cast<double>(nc), plot_h = cell_h * static_cast<double>(std::max<std::size_t>(1, nr));
  // As wide as the grid needs (cells are at most 140 px), not the page: a small map is not lost in white space.
  const int width = static_cast<int>(std::max(480.0, left + plot_w + right + 20.0));
  const int height = static_cast<int>(top + plot_h + label_room + 40.0);
  XmlWriter w;
  open_svg(w, c.id, c.title, width, height);
  w.element("text", {{"x", "12"}, {"y", "46"}, {"font-size", std::to_string(kLabelFontPx)}},
            fmt::format("{} \xE2\x80\x94 rows: {}; columns: {}", c.value_label, c.row_axis_label, c.column_axis_label));
  w.open("g", {{"class", "cells"}});
  for (std::size_t r = 0; r < nr; ++r) {
    const double y = top + cell_h * static_cast<double>(r);
    w.element("text", {{"x", px(left - 8)}, {"y", px(y + cell_h / 2 + 4)}, {"text-anchor", "end"}, {"font-size", std::to_string(kTickFontPx)}},
              rows[r]);
    for (std::size_t k = 0; k < nc; ++k) {
      const double x = left + cell_w * static_cast<double>(k);
      const double v = c.values[r][k];
      if (!std::isfinite(v)) {
        w.open("rect", {{"x", px(x)}, {"y", px(y)}, {"width", px(cell_w)}, {"height", px(cell_h)}, {"fill", "#eeeeee"},
                        {"stroke", "#ffffff"}, {"data-row", c.row_labels[r]}, {"data-column", c.column_labels[k]}});
        w.element("title", {}, fmt::format("{} = {}, {} = {}: no point", c.row_axis_label, c.row_labels[r], c.column_axis_label,
                                           c.column_labels[k]));
        w.close("rect");
        continue;
      }
      const std::string fill = colour_of(v);
      w.open("rect", {{"x", px(x)}, {"y", px(y)}, {"width", px(cell_w)}, {"height", px(cell_h)}, {"fill", fill}, {"stroke", "#ffffff"},
                      {"class", "cell"}, {"data-row", c.row_labels[r]}, {"data-column", c.column_labels[k]},
                      {"data-value", format_exact(v)}, {"data-unit", c.unit}});
      w.element("title", {}, fmt::format("{} = {}, {} = {}: {} {}", c.row_axis_label, c.row_labels[r], c.column_axis_label,
                                         c.column_labels[k], format_value(v, 6), c.unit));
      w.close("rect");
      // Dark text on the light (yellow-green) half of viridis, white on the dark half.
      const bool light = any && hi > lo ? (v - lo) / (hi - lo) > 0.55 : false;
      const std::string shown = format_value(v, c.significant);
      if (kCharWidthPx * 0.85 * static_cast<double>(glyphs(shown)) < cell_w - 4.0)
        w.element("text", {{"x", px(x + cell_w / 2)}, {"y", px(y + cell_h / 2 + 4)}, {"text-anchor", "middle"},
                           {"font-size", std::to_string(kValueFontPx)}, {"fill", light ? "#000000" : "#ffffff"}},
                  shown);
    }
  }
  w.close("g");
  // Column labels under the grid, and the axis names.
  const double label_y = top + plot_h + 16.0;
  for (std::size_t k = 0; k < nc; ++k) {
    const double cx = left + cell_w * (static_cast<double>(k) + 0.5);
    if (turned) {
      w.element("text", {{"x", px(cx)}, {"y", px(label_y)}, {"text-anchor", "end"}, {"font-size", std::to_string(kTickFontPx)},
                         {"transform", fmt::format("rotate(-45 {} {})", px(cx), px(label_y))}},
                cols[k]);
    } else {
      w.element("text", {{"x", px(cx)}, {"y", px(label_y)}, {"text-anchor", "middle"}, {"font-size", std::to_string(kTickFontPx)}}, cols[k]);
    }
  }
  w.element("text", {{"x", px(left + plot_w / 2)}, {"y", px(top + plot_h + label_room + 22.0)}, {"text-anchor", "middle"},
                     {"font-size", std::to_string(kLabelFontPx)}, {"class", "axis-label"}},
            c.column_axis_label);
  w.element("text", {{"x", "12"}, {"y", px(top - 10)}, {"font-size", std::to_string(kLabelFontPx)}, {"class", "axis-label"}},
            c.row_axis_label + " \xE2\x86\x93");
  // Colour bar: the value range, smallest at the bottom.
  if (any) {
    const double bx = left + plot_w + 28.0, bw = 16.0, bh = std::max(60.0, std::min(plot_h, 200.0));
    constexpr int kSteps = 20;
    w.open("g", {{"class", "colour-bar"}, {"data-min", format_exact(lo)}, {"data-max", format_exact(hi)}, {"data-unit", c.unit}});
    for (int i = 0; i < kSteps; ++i) {
      const double t0 = static_cast<double>(i) / kSteps;
      w.empty("rect", {{"x", px(bx)}, {"y", px(top + bh * (1.0 - t0 - 1.0 / kSteps))}, {"width", px(bw)}, {"height", px(bh / kSteps + 0.5)},
                       {"fill", viridis(t0 + 0.5 / kSteps)}});
    }
    w.empty("rect", {{"x", px(bx)}, {"y", px(top)}, {"width", px(bw)}, {"height", px(bh)}, {"fill", "none"}, {"stroke", kAxisColour}});
    w.element("text", {{"x", px(bx + bw + 6)}, {"y", px(top + 10)}, {"font-size", std::to_string(kTickFontPx)}}, format_value(hi, 4));
    w.element("text", {{"x", px(bx + bw + 6)}, {"y", px(top + bh)}, {"font-size", std::to_string(kTickFontPx)}}, format_value(lo, 4));
    w.element("text", {{"x", px(bx)}, {"y", px(top + bh + 18)}, {"font-size", std::to_string(kTickFontPx)}}, c.unit);
    w.close("g");
  }
  w.close("svg");
  return w.str();
}

}  // namespace moesim::reports::svg
