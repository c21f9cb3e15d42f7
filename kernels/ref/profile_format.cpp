// SPDX-License-Identifier: Apache-2.0
#include "moesim/kernels/profile_format.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "moesim/core/error.hpp"

namespace moesim::kernels::profile {

double percentile_sorted(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) throw Error("profile::percentile_sorted: no samples");
  if (!(p >= 0.0 && p <= 1.0)) throw Error("profile::percentile_sorted: p must lie in [0, 1]");
  const double rank = p * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(rank));
  const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

Stats summarize(std::vector<double> samples_s) {
  if (samples_s.empty()) throw Error("profile::summarize: no timing samples");
  for (double s : samples_s) {
    if (!std::isfinite(s) || s < 0.0) {
      throw Error("profile::summarize: invalid timing sample " + std::to_string(s) + " s");
    }
  }
  std::sort(samples_s.begin(), samples_s.end());
  Stats st;
  st.median_s = percentile_sorted(samples_s, 0.5);
  st.p10_s = percentile_sorted(samples_s, 0.1);
  st.p90_s = percentile_sorted(samples_s, 0.9);
  st.repeats = static_cast<std::int64_t>(samples_s.size());
  return st;
}

std::string device_slug(const std::string& gpu_name) {
  std::string lower;
  for (char c : gpu_name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto has = [&lower](const char* s) { return lower.find(s) != std::string::npos; };
  if (has("h100")) {
    if (has("pcie")) return "h100_pcie";
    if (has("nvl")) return "h100_nvl";
    if (has("hbm3")) return "h100_sxm";
  }
  if (has("h200") && !has("nvl")) return "h200";
  std::string slug;
  bool pending_sep = false;
  for (char c : lower) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      if (pending_sep && !slug.empty()) slug += '_';
      slug += c;
      pending_sep = false;
    } else {
      pending_sep = true;
    }
  }
  if (slug.rfind("nvidia_", 0) == 0) slug.erase(0, 7);
  if (slug.empty() || slug == "nvidia") throw Error("profile::device_slug: GPU name '" + gpu_name + "' gives no slug");
  return slug;
}

std::string json_escape(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

std::string json_number(double value) {
  if (!std::isfinite(value)) return "null";
  char buf[40];
  if (std::floor(value) == value && std::abs(value) < 9007199254740992.0) {
    std::snprintf(buf, sizeof buf, "%.0f", value);
  } else {
    std::snprintf(buf, sizeof buf, "%.9g", value);
  }
  return buf;
}

namespace {

std::string value_json(const Value& v) {
  if (const auto* i = std::get_if<std::int64_t>(&v)) return std::to_string(*i);
  if (const auto* x = std::get_if<double>(&v)) return json_number(*x);
  if (const auto* s = std::get_if<std::string>(&v)) return "\"" + json_escape(*s) + "\"";
  return std::get<bool>(v) ? "true" : "false";
}

void write_fields(std::ostringstream& out, const Fields& fields, bool& first) {
  for (const auto& [key, value] : fields) {
    out << (first ? "" : ", ") << "\"" << json_escape(key) << "\": " << value_json(value);
    first = false;
  }
}

void write_object_block(std::ostringstream& out, const char* name, const Fields& fields) {
  out << "  \"" << name << "\": {";
  for (std::size_t i = 0; i < fields.size(); ++i) {
    out << (i ? ",\n    " : "\n    ") << "\"" << json_escape(fields[i].first) << "\": " << value_json(fields[i].second);
  }
  out << (fields.empty() ? "},\n" : "\n  },\n");
}

bool has_key(const Fields& fields, const char* key) {
  return std::any_of(fields.begin(), fields.end(), [key](const auto& f) { return f.first == key; });
}

}  // namespace

std::string to_json(const Profile& profile) {
  for (const char* key : {"matmul_bf16_flops_per_s", "copy_bytes_per_s"}) {
    if (!has_key(profile.ceilings, key)) throw Error(std::string("profile::to_json: ceilings lack ") + key);
  }
  std::ostringstream out;
  out << "{\n  \"format\": \"" << kFormatName << "\",\n  \"format_version\": " << kFormatVersion << ",\n";
  write_object_block(out, "provenance", profile.provenance);
  write_object_block(out, "ceilings", profile.ceilings);
  out << "  \"entries\": [";
  for (std::size_t i = 0; i < profile.entries.size(); ++i) {
    const Entry& e = profile.entries[i];
    out << (i ? ",\n    {" : "\n    {");
    Fields head{{"kernel_class", to_string(e.kernel_class)}, {"kernel", e.kernel}, {"dtype", to_string(e.dtype)}};
    bool first = true;
    write_fields(out, head, first);
    write_fields(out, e.fields, first);
    const double t = e.stats.median_s;
    Fields tail{{"flops", e.cost.flops},
                {"bytes", e.cost.bytes},
                {"time_s", t},
                {"time_p10_s", e.stats.p10_s},
                {"time_p90_s", e.stats.p90_s},
                {"repeats", e.stats.repeats},
                {"achieved_flops_per_s", t > 0.0 ? e.cost.flops / t : 0.0},
                {"achieved_bytes_per_s", t > 0.0 ? e.cost.bytes / t : 0.0}};
    write_fields(out, tail, first);
    out << "}";
  }
  out << (profile.entries.empty() ? "],\n" : "\n  ],\n");
  out << "  \"skipped\": [";
  for (std::size_t i = 0; i < profile.skipped.size(); ++i) {
    out << (i ? ",\n    " : "\n    ") << "{\"what\": \"" << json_escape(profile.skipped[i].what)
        << "\", \"reason\": \"" << json_escape(profile.skipped[i].reason) << "\"}";
  }
  out << (profile.skipped.empty() ? "]\n" : "\n  ]\n") << "}\n";
  return out.str();
}

}  // namespace moesim::kernels::profile
