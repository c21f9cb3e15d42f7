// SPDX-License-Identifier: Apache-2.0
// Loader and validator of measured kernel profiles (profiles/measured/README.md, format version 1).
#include "moesim/perf/measured_profile.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "moesim/core/error.hpp"
#include "moesim/core/text.hpp"

namespace moesim::perf {

namespace {

using nlohmann::json;

constexpr const char* kFormatName = "moesim-measured-profile";  // profiles/measured/README.md, "Top level"
constexpr int kFormatVersion = 1;
// Rates in the file are written with 9 significant digits (kernels/ profile_format.cpp,
// json_number): achieved_* must equal flops / time_s to well within this relative tolerance.
constexpr double kConsistencyTolerance = 1e-6;

const std::vector<std::string>& profile_class_names() {
  static const std::vector<std::string> names = {"gemm",      "batched_gemm", "grouped_gemm",     "router",
                                                 "permute",   "unpermute",    "elementwise",      "decode_attention",
                                                 "prefill_attention"};
  return names;
}

/** Byte offsets of the values of a JSON text by path ("/entries/3/time_s"), found by a small scan
 *  of text that nlohmann::json already accepted. Used only to place error messages. */
std::unordered_map<std::string, std::size_t> value_offsets(const std::string& text) {
  struct Frame {
    bool array = false;
    std::string path;
    long index = 0;
    std::string key;
    bool want_key = true;
  };
  std::unordered_map<std::string, std::size_t> out;
  std::vector<Frame> st;
  auto value_path = [&st]() -> std::string {
    if (st.empty()) return "";
    const Frame& f = st.back();
    return f.path + "/" + (f.array ? std::to_string(f.index) : f.key);
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == ':') continue;
    if (c == '"') {
      std::size_t j = i + 1;
      std::string s;
      while (j < text.size() && text[j] != '"') {
        if (text[j] == '\\' && j + 1 < text.size()) ++j;  // the escaped character is part of the string
        s += text[j];
        ++j;
      }
      if (!st.empty() && !st.back().array && st.back().want_key) {
        st.back().key = s;
        st.back().want_key = false;
      } else {
        out.emplace(value_path(), i);
      }
      i = j;
      continue;
    }
    if (c == ',') {
      if (!st.empty()) {
        if (st.back().array) ++st.back().index;
        else st.back().want_key = true;
      }
      continue;
    }
    if (c == '{' || c == '[') {
      const std::string p = value_path();
      out.emplace(p, i);
      Frame f;
      f.array = c == '[';
      f.path = p;
      st.push_back(std::move(f));
      continue;
    }
    if (c == '}' || c == ']') {
      if (!st.empty()) st.pop_back();
      continue;
    }
    out.emplace(value_path(), i);  // a number, true, false or null
    while (i + 1 < text.size() && std::string(",]} \n\r\t").find(text[i + 1]) == std::string::npos) ++i;
  }
  return out;
}

std::pair<int, int> line_column(const std::string& text, std::size_t offset) {
  int line = 1, column = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return {line, column};
}

/** Validates one parsed profile, turning JSON paths into file:line:column for errors. */
class Checker {
 public:
  Checker(const std::string& text, const std::string& file) : text_(text), file_(file) {}

  /** An error at `path` ("/entries/3/time_s"), or at its closest existing parent. */
  InputError error(const std::string& path, const std::string& message) const {
    if (!offsets_) offsets_ = value_offsets(text_);
    std::string p = path;
    while (true) {
      auto it = offsets_->find(p);
      if (it != offsets_->end()) {
        const auto [line, column] = line_column(text_, it->second);
        return InputError(file_, line, column, key_of(path), message);
      }
      if (p.empty()) break;
      p = p.substr(0, p.rfind('/'));
    }
    return InputError(file_, 0, 0, key_of(path), message);
  }

  int line_of(const std::string& path) const {
    if (!offsets_) offsets_ = value_offsets(text_);
    auto it = offsets_->find(path);
    return it == offsets_->end() ? 0 : line_column(text_, it->second).first;
  }

  /** "/entries/3/time_s" -> "entries[3].time_s" */
  static std::string key_of(const std::string& path) {
    std::string out;
    std::size_t i = 0;
    while (i < path.size()) {
      const std::size_t j = path.find('/', i + 1);
      const std::string part = path.substr(i + 1, j == std::string::npos ? std::string::npos : j - i - 1);
      const bool index = !part.empty() && std::all_of(part.begin(), part.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
      out += index ? "[" + part + "]" : (out.empty() ? "" : ".") + part;
      if (j == std::string::npos) break;
      i = j;
    }
    return out;
  }

  const json& member(const json& obj, const std::string& path, const std::string& key) const {
    auto it = obj.find(key);
    if (it == obj.end()) throw error(path + "/" + key, "required key is missing");
    return *it;
  }
  double number(const json& obj, const std::string& path, const std::string& key, const char* what) const {
    const json& v = member(obj, path, key);
    if (!v.is_number()) throw error(path + "/" + key, fmt::format("expected a number ({}), got {}", what, v.dump()));
    const double x = v.get<double>();
    if (!std::isfinite(x)) throw error(path + "/" + key, fmt::format("expected a finite number ({})", what));
    return x;
  }
  double positive(const json& obj, const std::string& path, const std::string& key, const char* what) const {
    if (obj.contains(key) && obj.at(key).is_null())
      throw error(path + "/" + key, fmt::format("is null (NaN or infinite in the run); expected a positive number ({})", what));
    const double x = number(obj, path, key, what);
    if (!(x > 0.0)) throw error(path + "/" + key, fmt::format("must be > 0 ({}), got {}", what, x));
    return x;
  }
  std::string string(const json& obj, const std::string& path, const std::string& key) const {
    const json& v = member(obj, path, key);
    if (!v.is_string()) throw error(path + "/" + key, "expected a string, got " + v.dump());
    return v.get<std::string>();
  }
  bool boolean(const json& obj, const std::string& path, const std::string& key) const {
    const json& v = member(obj, path, key);
    if (!v.is_boolean()) throw error(path + "/" + key, "expected true or false, got " + v.dump());
    return v.get<bool>();
  }
  /** An optional shape field: absent -> 0; present -> a finite number >= 0. */
  double shape(const json& obj, const std::string& path, const std::string& key) const {
    if (!obj.contains(key)) return 0.0;
    const json& v = obj.at(key);
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0.0)
      throw error(path + "/" + key, "expected a number >= 0, got " + v.dump());
    return v.get<double>();
  }
  std::string opt_string(const json& obj, const std::string& path, const std::string& key) const {
    if (!obj.contains(key)) return "";
    const json& v = obj.at(key);
    if (!v.is_string()) throw error(path + "/" + key, "expected a string, got " + v.dump());
    return v.get<std::string>();
  }

 private:
  const std::string& text_;
  std::string file_;
  mutable std::optional<std::unordered_map<std::string, std::size_t>> offsets_;
};

bool close(double a, double b, double rel) { return std::fabs(a - b) <= rel * std::max(std::fabs(a), std::fabs(b)); }

ProfileEntry parse_entry(const Checker& c, const json& e, const std::string& p) {
  if (!e.is_object()) throw c.error(p, "expected an object (one timed kernel and shape)");
  ProfileEntry x;
  x.line = c.line_of(p);
  const std::string cls = c.string(e, p, "kernel_class");
  const auto& names = profile_class_names();
  if (std::find(names.begin(), names.end(), cls) == names.end())
    throw c.error(p + "/kernel_class", fmt::format("unknown kernel_class '{}'; allowed: {}", cls, text::join(names)));
  x.cls = kernel_class_from_string(cls);
  x.kernel = c.string(e, p, "kernel");
  if (x.kernel.empty()) throw c.error(p + "/kernel", "must not be empty");
  x.dtype = c.string(e, p, "dtype");
  if (x.dtype != "bf16" && x.dtype != "fp32" && x.dtype != "fp8")
    throw c.error(p + "/dtype", fmt::format("unknown dtype '{}'; allowed: bf16, fp32, fp8", x.dtype));
  const bool compute = uses_matmul_rate(x.cls) || x.cls == KernelClass::decode_attention;
  x.flops = c.number(e, p, "flops", "FLOPs of one call");
  if (compute ? !(x.flops > 0.0) : x.flops < 0.0)
    throw c.error(p + "/flops", fmt::format("must be {} for kernel_class {}, got {}", compute ? "> 0" : ">= 0", cls, x.flops));
  x.bytes = c.positive(e, p, "bytes", "device-memory bytes of one call");
  x.time_s = c.positive(e, p, "time_s", "median seconds of one call");
  x.time_p10_s = c.positive(e, p, "time_p10_s", "10th percentile, seconds");
  x.time_p90_s = c.positive(e, p, "time_p90_s", "90th percentile, seconds");
  if (x.time_p10_s > x.time_s * (1.0 + kConsistencyTolerance) || x.time_s > x.time_p90_s * (1.0 + kConsistencyTolerance))
    throw c.error(p + "/time_s", fmt::format("percentiles out of order: p10 {} <= median {} <= p90 {} must hold", x.time_p10_s,
                                             x.time_s, x.time_p90_s));
  const json& rep = c.member(e, p, "repeats");
  if (!rep.is_number_integer() || rep.get<long>() < 1) throw c.error(p + "/repeats", "expected an integer >= 1, got " + rep.dump());
  x.repeats = rep.get<long>();
  const double af = c.number(e, p, "achieved_flops_per_s", "flops / time_s");
  const double ab = c.number(e, p, "achieved_bytes_per_s", "bytes / time_s");
  if (!close(af, x.flops / x.time_s, kConsistencyTolerance))
    throw c.error(p + "/achieved_flops_per_s", fmt::format("{} differs from flops / time_s = {}", af, x.flops / x.time_s));
  if (!close(ab, x.bytes / x.time_s, kConsistencyTolerance))
    throw c.error(p + "/achieved_bytes_per_s", fmt::format("{} differs from bytes / time_s = {}", ab, x.bytes / x.time_s));

  x.m = c.shape(e, p, "m");
  x.n = c.shape(e, p, "n");
  x.k = c.shape(e, p, "k");
  x.batch = c.shape(e, p, "batch");
  x.tokens = c.shape(e, p, "tokens");
  x.d_model = c.shape(e, p, "d_model");
  x.d_ff = c.shape(e, p, "d_ff");
  x.experts = c.shape(e, p, "experts");
  x.top_k = c.shape(e, p, "top_k");
  x.tokens_per_expert = c.shape(e, p, "tokens_per_expert");
  x.seq = c.shape(e, p, "seq");
  x.kv_len = c.shape(e, p, "kv_len");
  x.q_heads = c.shape(e, p, "q_heads");
  x.kv_heads = c.shape(e, p, "kv_heads");
  x.d_head = c.shape(e, p, "d_head");
  x.block_size = c.shape(e, p, "block_size");
  x.model = c.opt_string(e, p, "model");
  x.activation = c.opt_string(e, p, "activation");
  x.strategy = c.opt_string(e, p, "strategy");
  x.distribution = c.opt_string(e, p, "distribution");
  if (e.contains("fastest")) x.fastest = c.boolean(e, p, "fastest");

  // Shape fields the simulator's tables key on, and their agreement with the FLOP count.
  auto need = [&](const char* key, double v) {
    if (!(v > 0.0)) throw c.error(p + "/" + key, fmt::format("kernel {} ({}) needs {} > 0", x.kernel, cls, key));
  };
  if (x.cls == KernelClass::gemm && x.kernel != "dense_ffn") {
    need("m", x.m);
    need("n", x.n);
    need("k", x.k);
    if (!close(x.flops, 2.0 * x.m * x.n * x.k, kConsistencyTolerance))
      throw c.error(p + "/flops", fmt::format("{} differs from 2·m·n·k = {}", x.flops, 2.0 * x.m * x.n * x.k));
  } else if (x.cls == KernelClass::batched_gemm) {
    need("m", x.m);
    need("n", x.n);
    need("k", x.k);
    need("batch", x.batch);
    if (!close(x.flops, 2.0 * x.batch * x.m * x.n * x.k, kConsistencyTolerance))
      throw c.error(p + "/flops", fmt::format("{} differs from 2·batch·m·n·k = {}", x.flops, 2.0 * x.batch * x.m * x.n * x.k));
  } else if (x.cls == KernelClass::grouped_gemm) {
    need("d_model", x.d_model);
    need("d_ff", x.d_ff);
    need("experts", x.experts);
    need("tokens_per_expert", x.tokens_per_expert);
    if (x.strategy.empty()) throw c.error(p + "/strategy", "grouped_gemm entries need a strategy");
    if (x.distribution.empty()) throw c.error(p + "/distribution", "grouped_gemm entries need a distribution");
    try {
      activation_gates(x.activation);
    } catch (const Error& err) {
      throw c.error(p + "/activation", err.what());
    }
  }
  return x;
}

}  // namespace

KernelOp entry_op(const ProfileEntry& e) {
  KernelOp op;
  op.cls = e.cls;
  op.name = e.kernel;
  op.dtype = e.dtype;
  op.flops = e.flops;
  op.bytes = e.bytes;
  op.m = e.m;
  op.n = e.n;
  op.k = e.k;
  op.batch = e.batch > 0.0 ? e.batch : 1.0;
  return op;
}

int activation_gates(const std::string& activation) {
  if (activation == "swiglu" || activation == "geglu") return 2;
  if (activation == "relu" || activation == "gelu") return 1;
  throw Error(fmt::format("unknown activation '{}'; allowed: relu, gelu, swiglu, geglu", activation));
}

MeasuredProfile MeasuredProfile::load(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot read measured profile {}", file));
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), file);
}

MeasuredProfile MeasuredProfile::parse(const std::string& text, const std::string& file) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    const auto [line, column] = line_column(text, e.byte > 0 ? e.byte - 1 : 0);
    throw InputError(file, line, column, "", std::string("JSON syntax error: ") + e.what());
  }
  const Checker c(text, file);
  if (!root.is_object()) throw c.error("", "expected a JSON object with format, format_version, provenance, ceilings, entries");
  MeasuredProfile p;
  p.file_ = file;

  const std::string format = c.string(root, "", "format");
  if (format != kFormatName) throw c.error("/format", fmt::format("expected \"{}\", got \"{}\"", kFormatName, format));
  const json& version = c.member(root, "", "format_version");
  if (!version.is_number_integer() || version.get<long>() != kFormatVersion)
    throw c.error("/format_version", fmt::format("this reader knows version {} (profiles/measured/README.md), got {}",
                                                 kFormatVersion, version.dump()));

  const json& prov = c.member(root, "", "provenance");
  if (!prov.is_object()) throw c.error("/provenance", "expected an object (measured, synthetic, device, gpu_name, ...)");
  p.measured_ = c.boolean(prov, "/provenance", "measured");
  p.synthetic_ = c.boolean(prov, "/provenance", "synthetic");
  if (p.measured_ && p.synthetic_)
    throw c.error("/provenance/synthetic", "a profile cannot be both measured and synthetic");
  p.device_ = c.string(prov, "/provenance", "device");
  if (p.device_.empty()) throw c.error("/provenance/device", "must not be empty");
  p.gpu_name_ = c.string(prov, "/provenance", "gpu_name");
  p.date_utc_ = c.opt_string(prov, "/provenance", "date_utc");
  p.git_hash_ = c.opt_string(prov, "/provenance", "git_hash");

  const json& ceil = c.member(root, "", "ceilings");
  if (!ceil.is_object()) throw c.error("/ceilings", "expected an object (matmul_bf16_flops_per_s, copy_bytes_per_s, ...)");
  p.ceilings_.matmul_bf16_flops_per_s = c.positive(ceil, "/ceilings", "matmul_bf16_flops_per_s", "dense bf16 GEMM FLOP/s");
  p.ceilings_.copy_bytes_per_s = c.positive(ceil, "/ceilings", "copy_bytes_per_s", "device copy bytes/s, read + write");
  if (ceil.contains("matmul_fp32_flops_per_s") && !ceil.at("matmul_fp32_flops_per_s").is_null())
    p.ceilings_.matmul_fp32_flops_per_s = c.positive(ceil, "/ceilings", "matmul_fp32_flops_per_s", "dense fp32 GEMM FLOP/s");
  if (ceil.contains("matmul_fp8_flops_per_s") && !ceil.at("matmul_fp8_flops_per_s").is_null())
    p.ceilings_.matmul_fp8_flops_per_s = c.positive(ceil, "/ceilings", "matmul_fp8_flops_per_s", "dense fp8 GEMM FLOP/s");

  const json& entries = c.member(root, "", "entries");
  if (!entries.is_array() || entries.empty()) throw c.error("/entries", "expected a non-empty array of timed kernels");
  for (std::size_t i = 0; i < entries.size(); ++i) p.entries_.push_back(parse_entry(c, entries[i], "/entries/" + std::to_string(i)));

  if (root.contains("skipped")) {
    const json& sk = root.at("skipped");
    if (!sk.is_array()) throw c.error("/skipped", "expected an array of {what, reason}");
    p.skipped_ = sk.size();
  }
  return p;
}

std::string MeasuredProfile::label() const { return measured_ ? "measured" : "SYNTHETIC, not a measurement"; }

std::string MeasuredProfile::citation() const {
  return fmt::format("{} ({}{}{}; {})", file_, gpu_name_, date_utc_.empty() ? "" : ", " + date_utc_,
                     git_hash_.empty() ? "" : ", git " + git_hash_, label());
}

std::vector<const ProfileEntry*> MeasuredProfile::kernel_entries() const {
  std::vector<const ProfileEntry*> out;
  // Expert-FFN shapes: key -> fastest strategy's entry.
  std::map<std::string, const ProfileEntry*> fastest;
  std::vector<std::string> order;
  for (const ProfileEntry& e : entries_) {
    if (e.cls == KernelClass::gemm && e.kernel == "dense_ffn") continue;
    if (e.cls != KernelClass::grouped_gemm) {
      out.push_back(&e);
      continue;
    }
    const std::string key = fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}", e.kernel, e.dtype, e.d_model, e.d_ff, e.activation, e.experts,
                                        e.tokens_per_expert, e.distribution, e.tokens);
    auto it = fastest.find(key);
    if (it == fastest.end()) {
      fastest.emplace(key, &e);
      order.push_back(key);
    } else if (e.time_s < it->second->time_s) {
      it->second = &e;
    }
  }
  for (const auto& key : order) out.push_back(fastest.at(key));
  return out;
}

}  // namespace moesim::perf
