// SPDX-License-Identifier: Apache-2.0
// Valid scenarios: defaults filled in, derived defaults, typed fields equal to the YAML, SI conversion,
// inline datacenters, and every shipped scenario under scenarios/ loads.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include "moesim/scenario/fields.hpp"
#include "scenario_test_support.hpp"

using moesim::scenario::Activation;
using moesim::scenario::Architecture;
using moesim::scenario::find_field;
using moesim::scenario::GroupSplit;
using moesim::scenario::load_alternatives;
using moesim::scenario::load_file;
using moesim::scenario::Optimizer;
using moesim::scenario::Remat;
using moesim::scenario::Scenario;
using moesim::scenario::SecondExpertPolicy;
using moesim::scenario::SplitKind;
namespace t = moesim::scenario::test;

namespace {

/** The field table's default for `path` (what the loader must fill in). */
const nlohmann::json& table_default(const std::string& path) {
  const auto* f = find_field(path);
  if (f == nullptr || f->default_value.is_null()) throw std::runtime_error("no default for " + path);
  return f->default_value;
}

/** Largest a <= b with a x b = n (the most square 2-D factorisation), by brute force. */
std::vector<int> square_2d(int n) {
  int a = 1;
  for (int d = 1; d * d <= n; ++d)
    if (n % d == 0) a = d;
  return {a, n / a};
}

/** Smallest max/min ratio over all a <= b <= c with a x b x c = n, by brute force. */
double best_ratio_3d(int n) {
  double best = std::numeric_limits<double>::infinity();
  for (int a = 1; a <= n; ++a)
    for (int b = a; a * b <= n; ++b)
      if (n % (a * b) == 0 && n / (a * b) >= b) best = std::min(best, static_cast<double>(n / (a * b)) / a);
  return best;
}

/** Reads the gCO2e/kWh of `region` from a Google region-carbon CSV (last column) and returns kg/kWh. */
double google_csv_kg_per_kwh(const std::string& csv, const std::string& region) {
  for (const auto& line : t::lines_of(t::slurp(csv))) {
    if (line.rfind(region + ",", 0) != 0) continue;
    return std::stod(line.substr(line.find_last_of(',') + 1)) / 1000.0;
  }
  throw std::runtime_error(region + " not in " + csv);
}

std::string google_csv(int year) {
  return std::string(MOESIM_SOURCE_ROOT) + "/profiles/grid/google/google-cloud-region-carbon-" + std::to_string(year) +
         ".csv";
}

}  // namespace

TEST_CASE("scenario::load_string: defaults are filled in from the field table", "[scenario][happy]") {
  const Scenario s = t::load(t::base_yaml());
  CHECK(s.name == "base");
  CHECK(s.description == table_default("description").get<std::string>());
  CHECK(s.seed == table_default("seed").get<std::uint64_t>());
  CHECK(s.source_file == "test.yaml");
  CHECK(s.model.type == table_default("model.type").get<std::string>());
  CHECK(s.model.architecture == Architecture::decoder_only);
  CHECK(s.model.capacity_factor == table_default("model.capacity_factor").get<double>());
  CHECK(s.model.dtype == table_default("model.dtype").get<std::string>());
  CHECK(to_string(s.model.activation) == table_default("model.activation").get<std::string>());
  CHECK(to_string(s.training.optimizer) == table_default("training.optimizer").get<std::string>());
  CHECK(to_string(s.training.rematerialization) == table_default("training.rematerialization").get<std::string>());
  CHECK(s.training.steps_simulated == table_default("training.steps_simulated").get<int>());
  CHECK(s.training.overlap_grad_reduce == table_default("training.overlap_grad_reduce").get<bool>());
  CHECK_FALSE(s.training.duration_days.has_value());
  CHECK(s.routing.type == table_default("routing.type").get<std::string>());
  CHECK(s.routing.skew == table_default("routing.skew").get<double>());
  CHECK(s.routing.load.empty());
  CHECK(s.routing.group_size_tokens == table_default("routing.group_size_tokens").get<int>());
  CHECK(s.routing.dropless == table_default("routing.dropless").get<bool>());
  CHECK(s.routing.capacity_counts_top_k == table_default("routing.capacity_counts_top_k").get<bool>());
  CHECK(s.routing.min_expert_capacity == table_default("routing.min_expert_capacity").get<int>());
  CHECK(table_default("routing.group_split") == "fixed");
  CHECK(s.routing.group_split == GroupSplit::fixed);
  CHECK(table_default("routing.second_expert_policy") == "all");
  CHECK(s.routing.second_expert_policy == SecondExpertPolicy::all);
  CHECK(s.routing.second_gate == table_default("routing.second_gate").get<double>());
  CHECK(s.routing.second_gate == 0.5);
  CHECK(s.parallelism.data == 1);
  CHECK(s.parallelism.tensor == 1);
  CHECK(s.parallelism.pipeline == 1);
  CHECK(s.parallelism.microbatches == 1);
  CHECK(s.parallelism.schedule == "1f1b");
  CHECK(s.parallelism.placement == std::vector<std::string>{"tensor", "expert", "data", "pipeline"});
  CHECK(s.cluster.topology.nodes_per_leaf == table_default("cluster.topology.nodes_per_leaf").get<int>());
  CHECK(s.cluster.topology.oversubscription == table_default("cluster.topology.oversubscription").get<double>());
  CHECK(s.cluster.topology.link_bandwidth_bytes_per_s == 0.0);  // 0 = the catalog's figure
  CHECK(s.cluster.topology.link_latency_s == 0.0);
  REQUIRE(s.placement.size() == 1);
  CHECK(s.placement[0].share == table_default("placement[].share").get<double>());
  CHECK_FALSE(s.placement[0].inline_spec.has_value());
  CHECK(s.split == SplitKind::data);
  CHECK(s.wan.bandwidth_bytes_per_s == 0.0);
  CHECK(s.energy.embodied == table_default("energy.embodied").get<bool>());
  CHECK_FALSE(s.energy.average_chip_power_w.has_value());
  CHECK(s.compare.is_null());
  CHECK(s.steps() == Approx(1.0e9 / 65536.0));
}

TEST_CASE("scenario::load_string: derived defaults in the typed scenario and the resolved JSON", "[scenario][happy]") {
  const Scenario s = t::load(t::base_yaml());
  SECTION("model") {
    CHECK(s.model.decoder_layers == 4);  // `layers` of a decoder-only model
    CHECK(s.model.encoder_layers == 0);
    CHECK(s.model.d_head == 512 / 8);
    CHECK(s.model.expert_d_ff == 2048);
    CHECK(s.model.target_seq_len == 1024);
    const auto& m = s.resolved["model"];
    CHECK(m["d_head"] == 64);
    CHECK(m["expert_d_ff"] == 2048);
    CHECK(m["target_seq_len"] == 1024);
    CHECK(m["decoder_layers"] == 4);
    CHECK(m["encoder_layers"] == 0);
    CHECK(m["capacity_factor"] == 1.25);
  }
  SECTION("topology on a GPU: NVLink nodes and a fat-tree, the accelerator's node size") {
    CHECK(s.cluster.topology.type == "nvlink_fat_tree");
    const int gpn = t::real_catalog().accelerator("h100").gpus_per_node;
    REQUIRE(gpn > 0);
    CHECK(s.cluster.topology.gpus_per_node == gpn);
    CHECK(s.cluster.topology.dims.empty());
    CHECK(s.resolved["cluster"]["topology"]["type"] == "nvlink_fat_tree");
    CHECK(s.resolved["cluster"]["topology"]["gpus_per_node"] == gpn);
    CHECK_FALSE(s.resolved["cluster"]["topology"].contains("dims"));
  }
  SECTION("every key of the field table is in the resolved JSON or has no default") {
    // Walk the table: a key with a default must appear in the record (top level and one section deep).
    for (const auto& f : moesim::scenario::fields()) {
      if (f.default_value.is_null() || f.path.find('[') != std::string::npos) continue;
      const auto dot = f.path.find('.');
      INFO(f.path);
      if (dot == std::string::npos) {
        CHECK(s.resolved.contains(f.path));
      } else if (f.path.find('.', dot + 1) == std::string::npos) {
        // Keys of an optional section without a default (serving in a training scenario) appear only with it.
        const auto* section = moesim::scenario::find_field(f.path.substr(0, dot));
        if (section && section->default_value.is_null() && !s.resolved.contains(f.path.substr(0, dot))) continue;
        CHECK(s.resolved[f.path.substr(0, dot)].contains(f.path.substr(dot + 1)));
      }
    }
  }
  SECTION("the resolved JSON can be loaded again and gives the same scenario") {
    // What the store keeps must be a complete scenario: dump it as YAML-compatible JSON and reload.
    // (Derived keys - decoder_layers etc. - make it an encoder/decoder spelling, so strip them back.)
    nlohmann::json again = s.resolved;
    again["model"].erase("encoder_layers");
    again["model"].erase("decoder_layers");
    const Scenario r = t::load(again.dump());
    CHECK(r.resolved == s.resolved);
  }
}

TEST_CASE("scenario::load_string: TPU topology auto resolves to a near-square torus", "[scenario][happy]") {
  std::string yaml = t::replace_line(t::base_yaml(), "  accelerator: h100", "  accelerator: tpu_v3");
  yaml = t::replace_line(yaml, "  tokens: 1.0e9", "  tokens: 1.0e12");
  SECTION("2-D on TPU v3 (2 cores per chip)") {
    for (int count : {4, 12, 36, 64, 512, 1024, 7}) {
      INFO("count " << count);
      const int devices = 2 * count;
      const int expert = count == 7 ? 2 : 8;
      const Scenario s = t::load(yaml, {"cluster.count=" + std::to_string(count),
                                        "parallelism.expert=" + std::to_string(expert),
                                        "parallelism.data=" + std::to_string(devices / expert),
                                        "training.batch_tokens=" + std::to_string(devices * 1024)});
      CHECK(s.cluster.topology.type == "torus_2d");
      std::vector<int> dims = s.cluster.topology.dims;
      CHECK(dims == square_2d(count));
      CHECK(s.resolved["cluster"]["topology"]["dims"] == dims);
    }
  }
  SECTION("a full pod is the pod's own shape") {
    const Scenario s = t::load(yaml, {"cluster.count=1024", "parallelism.data=256", "training.batch_tokens=2097152"});
    CHECK(s.cluster.topology.dims == t::real_catalog().accelerator("tpu_v3").pod_dims);
  }
  SECTION("3-D on TPU v4 (pods are 3-D)") {
    std::string y4 = t::replace_line(yaml, "  accelerator: tpu_v3", "  accelerator: tpu_v4");
    REQUIRE(t::real_catalog().accelerator("tpu_v4").pod_dims.size() == 3);
    REQUIRE(t::real_catalog().accelerator("tpu_v4").devices_per_chip == 1);
    for (int count : {8, 24, 64, 72, 128, 512, 4096}) {
      INFO("count " << count);
      const Scenario s = t::load(y4, {"cluster.count=" + std::to_string(count),
                                      "parallelism.data=" + std::to_string(count / 8),
                                      "training.batch_tokens=" + std::to_string(count * 1024)});
      CHECK(s.cluster.topology.type == "torus_3d");
      const auto& dims = s.cluster.topology.dims;
      REQUIRE(dims.size() == 3);
      CHECK(std::is_sorted(dims.begin(), dims.end()));
      CHECK(dims[0] * dims[1] * dims[2] == count);
      CHECK(static_cast<double>(dims[2]) / dims[0] == Approx(best_ratio_3d(count)));
    }
  }
  SECTION("an explicit torus type on a TPU keeps the given dims") {
    const Scenario s = t::load(yaml, {"cluster.count=4", "cluster.topology.type=torus_2d", "cluster.topology.dims=[1, 4]"});
    CHECK(s.cluster.topology.dims == std::vector<int>{1, 4});
  }
}

TEST_CASE("scenario::load_file: every typed field equals the YAML (fixture with every key set)", "[scenario][happy]") {
  const std::string file = t::data("full.yaml");
  const Scenario s = load_file(file, t::real_catalog());
  CHECK(s.source_file == file);
  CHECK(s.name == "full");
  CHECK(s.description == "Every key set.");
  CHECK(s.seed == 17u);
  const auto& m = s.model;
  CHECK(m.type == "moe_transformer");
  CHECK(m.architecture == Architecture::encoder_decoder);
  CHECK(m.encoder_layers == 6);
  CHECK(m.decoder_layers == 4);
  CHECK(m.total_layers() == 10);
  CHECK(m.d_model == 1024);
  CHECK(m.d_ff == 4096);
  CHECK(m.expert_d_ff == 2048);
  CHECK(m.heads == 16);
  CHECK(m.d_head == 80);  // given, not d_model / heads = 64
  CHECK(m.experts == 16);
  CHECK(m.moe_every == 2);
  CHECK(m.top_k == 2);
  CHECK(m.capacity_factor == 1.5);
  CHECK(m.vocab == 32128);
  CHECK(m.seq_len == 512);
  CHECK(m.target_seq_len == 128);
  CHECK(m.dtype == "fp32");
  CHECK(m.activation == Activation::geglu);
  CHECK(m.gated());
  CHECK(m.is_moe());
  CHECK_FALSE(m.is_moe_layer(0));
  CHECK(m.is_moe_layer(1));
  const auto& tr = s.training;
  CHECK(tr.tokens == 2.0e10);
  CHECK(tr.batch_tokens == 1048576.0);
  CHECK(tr.optimizer == Optimizer::adafactor);
  CHECK(tr.rematerialization == Remat::full);
  REQUIRE(tr.duration_days.has_value());
  CHECK(*tr.duration_days == 2.5);
  CHECK(tr.steps_simulated == 5);
  CHECK_FALSE(tr.overlap_grad_reduce);
  CHECK(s.routing.type == "zipf");
  CHECK(s.routing.skew == 1.1);
  CHECK(s.routing.group_size_tokens == 1024);
  CHECK_FALSE(s.routing.capacity_counts_top_k);
  CHECK(s.routing.min_expert_capacity == 4);
  CHECK(s.routing.dropless);
  CHECK(s.routing.group_split == GroupSplit::mesh_tensorflow);
  CHECK(s.routing.second_expert_policy == SecondExpertPolicy::random);
  CHECK(s.routing.second_expert_threshold == 0.2);
  CHECK(s.routing.second_gate == 0.3);
  const auto& p = s.parallelism;
  CHECK(p.data == 2);
  CHECK(p.expert == 16);
  CHECK(p.tensor == 2);
  CHECK(p.pipeline == 2);
  CHECK(p.microbatches == 4);
  CHECK(p.devices() == 128);
  CHECK(s.cluster.accelerator == "tpu_v4");
  CHECK(s.cluster.count == 128);
  CHECK(s.cluster.topology.type == "torus_3d");
  CHECK(s.cluster.topology.dims == std::vector<int>{4, 4, 8});
  CHECK(s.cluster.topology.gpus_per_node == 0);  // not a GPU fabric
  CHECK(s.split == SplitKind::expert);
  CHECK(s.energy.embodied);
  REQUIRE(s.energy.average_chip_power_w.has_value());
  CHECK(*s.energy.average_chip_power_w == 300.0);
  CHECK(s.energy.start_time_utc == "2024-03-01T00:00:00Z");

  SECTION("SI conversion at the boundary: Gbit/s -> byte/s, ms and us -> s") {
    // 1 Gbit/s = 1e9 bit/s / 8 bit/byte = 1.25e8 byte/s.
    CHECK(s.wan.bandwidth_bytes_per_s == Approx(200.0 * 1e9 / 8.0).epsilon(1e-12));
    CHECK(s.wan.latency_s == Approx(12.5e-3).epsilon(1e-12));
    CHECK(s.cluster.topology.link_bandwidth_bytes_per_s == Approx(400.0 * 1e9 / 8.0).epsilon(1e-12));
    CHECK(s.cluster.topology.link_latency_s == Approx(2.5e-6).epsilon(1e-12));
    // The record keeps the file's units (the key names say which).
    CHECK(s.resolved["wan"]["bandwidth_gbps"] == 200.0);
    CHECK(s.resolved["wan"]["latency_ms"] == 12.5);
  }
  SECTION("the conversion agrees with the field table's SI scale") {
    CHECK(s.wan.bandwidth_bytes_per_s == Approx(200.0 * find_field("wan.bandwidth_gbps")->si_scale));
    CHECK(s.wan.latency_s == Approx(12.5 * find_field("wan.latency_ms")->si_scale));
    CHECK(s.cluster.topology.link_bandwidth_bytes_per_s ==
          Approx(400.0 * find_field("cluster.topology.link_bandwidth_gbps")->si_scale));
    CHECK(s.cluster.topology.link_latency_s == Approx(2.5 * find_field("cluster.topology.link_latency_us")->si_scale));
  }
  SECTION("catalog and inline datacenters") {
    REQUIRE(s.placement.size() == 2);
    CHECK(s.placement[0].datacenter == "gcp_us_central1_2023");
    CHECK(s.placement[0].share == 0.5);
    CHECK_FALSE(s.placement[0].inline_spec.has_value());
    const auto& e = s.placement[1];
    CHECK(e.datacenter == "my_site");
    CHECK(e.share == 0.5);
    REQUIRE(e.inline_spec.has_value());
    const auto& dc = *e.inline_spec;
    CHECK(dc.name == "my_site");
    CHECK(dc.display_name == "My site");
    CHECK(dc.pue == 1.25);
    // Intensity from the grid key, read here straight from the shipped CSV (345 g/kWh in 2023).
    CHECK(dc.gross_kgco2e_per_kwh == Approx(google_csv_kg_per_kwh(google_csv(2023), "europe-west3")));
    REQUIRE(dc.net_kgco2e_per_kwh.has_value());
    CHECK(*dc.net_kgco2e_per_kwh == 0.1);
    REQUIRE(dc.cfe_fraction.has_value());
    CHECK(*dc.cfe_fraction == 0.4);  // the file's figure wins over the grid dataset's
    CHECK(dc.country_iso_code == "DEU");
    CHECK(dc.hourly_intensity_csv == "hourly.csv");
  }
}

TEST_CASE("scenario::load_string: an inline datacenter with a grid key takes its intensity from the catalog",
          "[scenario][happy]") {
  const std::string yaml = t::replace_line(t::base_yaml(), "  - datacenter: gcp_us_central1_2023",
                                           "  - datacenter:\n      name: iowa_inline\n      pue: 1.1\n"
                                           "      grid: google/us-central1/2023");
  const Scenario s = t::load(yaml);
  REQUIRE(s.placement.size() == 1);
  REQUIRE(s.placement[0].inline_spec.has_value());
  const auto& dc = *s.placement[0].inline_spec;
  CHECK(s.placement[0].datacenter == "iowa_inline");
  CHECK(dc.display_name == "iowa_inline");  // defaults to the name
  CHECK(dc.pue == 1.1);
  CHECK(dc.gross_kgco2e_per_kwh == Approx(google_csv_kg_per_kwh(google_csv(2023), "us-central1")));
  // The same region's catalog datacenter carries the same intensity.
  CHECK(dc.gross_kgco2e_per_kwh == Approx(t::real_catalog().datacenter("gcp_us_central1_2023").gross_kgco2e_per_kwh));
  CHECK(dc.year == 2023);
  // A site on that grid, as the catalog's grid: datacenters: Google's CFE is Google's own hourly matching, not the
  // grid's, so it is not copied (an inline cfe_fraction gives one).
  CHECK_FALSE(dc.cfe_fraction.has_value());
  CHECK_FALSE(dc.licence.empty());
  CHECK(t::contains(dc.sources.at("pue"), "test.yaml"));
  // The intensity's source names the grid key and its basis, as the catalog's grid: datacenters do (the reports
  // find the dataset's attribution from it).
  CHECK(dc.sources.at("gross_kgco2e_per_kwh") ==
        t::real_catalog().datacenter("grid:google/us-central1/2023").sources.at("gross_kgco2e_per_kwh"));
  CHECK(t::contains(dc.sources.at("gross_kgco2e_per_kwh"), "grid key google/us-central1/2023: operational intensity"));

  SECTION("an Electricity Maps zone: its carbon-free generation share is not a CFE") {
    const Scenario em = t::load(t::replace_line(yaml, "      grid: google/us-central1/2023", "      grid: electricity_maps/DE/2023"));
    const auto& d = *em.placement[0].inline_spec;
    CHECK_FALSE(d.cfe_fraction.has_value());
    CHECK(t::contains(d.sources.at("gross_kgco2e_per_kwh"), "grid key electricity_maps/DE/2023: lifecycle intensity"));
    CHECK(d.licence == "ODbL-1.0");
  }

  SECTION("an explicit intensity overrides the grid key") {
    const std::string y2 = t::replace_line(yaml, "      grid: google/us-central1/2023",
                                           "      grid: google/us-central1/2023\n      gross_kgco2e_per_kwh: 0.05");
    const Scenario s2 = t::load(y2);
    CHECK(s2.placement[0].inline_spec->gross_kgco2e_per_kwh == 0.05);
  }
}

TEST_CASE("scenario::load_string: GPU fat-tree options are kept", "[scenario][happy]") {
  const Scenario s = t::load(t::replace_line(t::base_yaml(), "  count: 8",
                                             "  count: 8\n  topology: {gpus_per_node: 4, nodes_per_leaf: 2, "
                                             "oversubscription: 2.0}"));
  CHECK(s.cluster.topology.type == "nvlink_fat_tree");
  CHECK(s.cluster.topology.gpus_per_node == 4);
  CHECK(s.cluster.topology.nodes_per_leaf == 2);
  CHECK(s.cluster.topology.oversubscription == 2.0);
}

TEST_CASE("scenario::load_string: multi-site jobs with a WAN", "[scenario][happy]") {
  std::string yaml = t::replace_line(t::base_yaml(), "  expert: 8", "  data: 2\n  expert: 4");
  yaml = t::replace_line(yaml, "  count: 8", "  count: 8\n  topology: {gpus_per_node: 4}");  // 4 GPUs a site: whole nodes
  yaml = t::replace_line(yaml, "  - datacenter: gcp_us_central1_2023",
                         "  - datacenter: gcp_us_central1_2023\n    share: 0.5\n"
                         "  - datacenter: gcp_europe_west1_2023\n    share: 0.5");
  yaml += "wan:\n  bandwidth_gbps: 100\n  latency_ms: 20\n";
  const Scenario s = t::load(yaml);
  REQUIRE(s.placement.size() == 2);
  CHECK(s.wan.bandwidth_bytes_per_s == Approx(100.0 * 1e9 / 8.0));
  CHECK(s.wan.latency_s == Approx(0.020));
}

TEST_CASE("scenario::load_file: every scenario shipped under scenarios/ and bench/ loads", "[scenario][happy]") {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  for (const char* dir : {"/scenarios", "/bench"})
    for (const auto& entry : fs::recursive_directory_iterator(std::string(MOESIM_SOURCE_ROOT) + dir))
      if (entry.is_regular_file() && entry.path().extension() == ".yaml") files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  REQUIRE_FALSE(files.empty());
  for (const auto& f : files) {
    INFO(f);
    Scenario s;
    if (fs::path(f).parent_path().filename() == "plan") {  // parallelism: auto, for `moesim plan`
      CHECK_THROWS_WITH(load_file(f, t::real_catalog()), Catch::Contains("moesim plan"));
      REQUIRE_NOTHROW(s = moesim::scenario::load_plan_base(f, t::real_catalog()));
      CHECK(s.parallelism.devices() == s.cluster.count * t::real_catalog().accelerator(s.cluster.accelerator).devices_per_chip);
      continue;
    }
    REQUIRE_NOTHROW(s = load_file(f, t::real_catalog()));
    CHECK_FALSE(s.name.empty());
    const auto& accel = t::real_catalog().accelerator(s.cluster.accelerator);
    if (s.is_serving()) {
      int devices = 0;
      for (const auto& pool : s.serving->pools) devices += pool.replicas * pool.devices_per_replica();
      CHECK(devices == s.cluster.count * accel.devices_per_chip);
    } else {
      CHECK(s.parallelism.devices() == s.cluster.count * accel.devices_per_chip);
    }
    CHECK_NOTHROW(load_alternatives(f, t::real_catalog()));
  }
}

TEST_CASE("scenario::load_file: the published GShard-600B scenario holds the published configuration",
          "[scenario][happy]") {
  const std::string file = std::string(MOESIM_SOURCE_ROOT) + "/scenarios/published/gshard_600b.yaml";
  if (!std::filesystem::exists(file)) {
    WARN("scenarios/published/gshard_600b.yaml not present; skipped");
    return;
  }
  const Scenario s = load_file(file, t::real_catalog());
  // Lepikhin et al. 2020, Table 3: MoE(2048E, 36L), 2048 TPU v3 cores = 1024 chips, top-2.
  CHECK(s.model.experts == 2048);
  CHECK(s.model.total_layers() == 36);
  CHECK(s.model.top_k == 2);
  CHECK(s.cluster.accelerator == "tpu_v3");
  CHECK(s.cluster.count == 1024);
  CHECK(s.parallelism.devices() == 2048);
  CHECK(s.cluster.topology.dims == std::vector<int>{32, 32});
  CHECK(s.model.d_head == 128);
}
