// SPDX-License-Identifier: Apache-2.0
// Cross-field checks (sim/scenario/resolve.cpp): each error names the key that is wrong, where it is,
// the numbers involved and what would be allowed.

#include <catch2/catch.hpp>

#include "moesim/core/text.hpp"
#include "scenario_test_support.hpp"

using moesim::InputError;
namespace t = moesim::scenario::test;

namespace {

/** The base scenario on TPU v3: 4 chips x 2 cores = 8 devices, all expert-parallel. */
std::string tpu_yaml() {
  std::string y = t::replace_line(t::base_yaml(), "  accelerator: h100", "  accelerator: tpu_v3");
  return t::replace_line(y, "  count: 8", "  count: 4");
}

/** Two sites, data-parallel split: data 2 x expert 4 = 8 GPUs. */
std::string two_site_yaml(const std::string& share0, const std::string& share1, bool with_wan) {
  std::string y = t::replace_line(t::base_yaml(), "  expert: 8", "  data: 2\n  expert: 4");
  y = t::replace_line(y, "  count: 8", "  count: 8\n  topology: {gpus_per_node: 4}");  // 4 GPUs a site: whole nodes
  y = t::replace_line(y, "  - datacenter: gcp_us_central1_2023",
                      "  - datacenter: gcp_us_central1_2023\n    share: " + share0 +
                          "\n  - datacenter: gcp_europe_west1_2023\n    share: " + share1);
  if (with_wan) y += "wan:\n  bandwidth_gbps: 100\n  latency_ms: 50\n";
  return y;
}

}  // namespace

TEST_CASE("scenario::resolve: the fixtures used below are valid", "[scenario][resolve]") {
  REQUIRE_NOTHROW(t::load(tpu_yaml()));
  REQUIRE_NOTHROW(t::load(two_site_yaml("0.5", "0.5", true)));
}

TEST_CASE("scenario::resolve: unknown catalog names list valid and closest names", "[scenario][resolve]") {
  SECTION("accelerator") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  accelerator: h100", "  accelerator: h1000");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "cluster.accelerator");
    CHECK(e.line() == t::line_in(yaml, "accelerator: h1000"));
    CHECK(e.column() == t::column_in(yaml, "accelerator: h1000", "h1000"));
    CHECK(t::contains(e.message(), "unknown accelerator 'h1000'"));
    CHECK(t::contains(e.message(), "closest: h100"));
    for (const auto& name : t::real_catalog().accelerator_names()) CHECK(t::contains(e.message(), name));
  }
  SECTION("datacenter") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  - datacenter: gcp_us_central1_2023",
                                             "  - datacenter: gcp_us_central1_2032");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "placement[0].datacenter");
    CHECK(e.line() == t::line_in(yaml, "gcp_us_central1_2032"));
    CHECK(e.column() == t::column_in(yaml, "gcp_us_central1_2032", "gcp_"));
    CHECK(t::contains(e.message(), "unknown datacenter 'gcp_us_central1_2032'"));
    // The closest names: same region, other years (edit distance 1 or 2).
    const auto closest = moesim::text::closest("gcp_us_central1_2032", t::real_catalog().datacenter_names());
    REQUIRE_FALSE(closest.empty());
    CHECK(t::contains(closest.front(), "gcp_us_central1_20"));
    CHECK(t::contains(e.message(), "closest: " + closest.front()));
  }
  SECTION("grid key of an inline datacenter") {
    const std::string yaml = t::replace_line(
        t::base_yaml(), "  - datacenter: gcp_us_central1_2023",
        "  - datacenter:\n      name: mine\n      pue: 1.2\n      grid: google/us-central1/2032");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "placement[0].datacenter.grid");
    CHECK(e.line() == t::line_in(yaml, "grid: google/us-central1/2032"));
    CHECK(t::contains(e.message(), "unknown grid key 'google/us-central1/2032'"));
    CHECK(t::contains(e.message(), "closest: google/us-central1/20"));
  }
  SECTION("inline datacenter with neither grid nor intensity") {
    const std::string yaml =
        t::replace_line(t::base_yaml(), "  - datacenter: gcp_us_central1_2023", "  - datacenter:\n      name: mine\n      pue: 1.2");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "placement[0].datacenter");
    CHECK(t::contains(e.message(), "grid:"));
    CHECK(t::contains(e.message(), "gross_kgco2e_per_kwh:"));
  }
  SECTION("inline datacenter without its required pue") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  - datacenter: gcp_us_central1_2023",
                                             "  - datacenter:\n      name: mine\n      grid: google/us-central1/2023");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "placement[0].datacenter.pue");
    CHECK(t::contains(e.message(), "missing required key"));
    CHECK(e.line() == t::line_in(yaml, "name: mine"));
  }
}

TEST_CASE("scenario::resolve: parallelism must match the devices of the cluster", "[scenario][resolve]") {
  SECTION("product != devices, with devices per chip in the message") {
    const std::string yaml = t::replace_line(tpu_yaml(), "  expert: 8", "  expert: 4");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "parallelism");
    CHECK(e.line() == t::line_in(yaml, "  expert: 4"));  // the parallelism mapping (its first key)
    CHECK(t::contains(e.message(), "1 x 4 x 1 x 1 = 4 devices"));
    CHECK(t::contains(e.message(), "4 chips x 2 devices per chip"));
    CHECK(t::contains(e.message(), "tpu_v3"));
    CHECK(t::contains(e.message(), "= 8 devices"));
  }
  SECTION("one device per chip is singular") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  expert: 8", "  expert: 4");
    const auto e = t::load_error(yaml);
    CHECK(t::contains(e.message(), "8 chips x 1 device per chip"));
    CHECK(t::contains(e.message(), "= 8 devices"));
  }
  SECTION("expert parallelism must divide the experts") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  experts: 8", "  experts: 12");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "parallelism.expert");
    CHECK(e.line() == t::line_in(yaml, "  expert: 8"));
    CHECK(e.column() == t::column_in(yaml, "  expert: 8", "8"));
    CHECK(t::contains(e.message(), "expert parallelism 8 must divide the 12 experts"));
  }
  SECTION("expert parallelism larger than the experts") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  experts: 8", "  experts: 4");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "parallelism.expert");
    CHECK(t::contains(e.message(), "must divide the 4 experts"));
  }
  SECTION("expert parallelism on a dense model") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  experts: 8", "  experts: 0");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "parallelism.expert");
    CHECK(t::contains(e.message(), "needs an MoE model"));
  }
  SECTION("tensor parallelism must divide the heads") {
    std::string yaml = t::replace_line(t::base_yaml(), "  d_model: 512", "  d_model: 768");
    yaml = t::replace_line(yaml, "  heads: 8", "  heads: 12");
    yaml = t::replace_line(yaml, "  expert: 8", "  tensor: 8");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "parallelism.tensor");
    CHECK(e.line() == t::line_in(yaml, "  tensor: 8"));
    CHECK(t::contains(e.message(), "tensor parallelism 8 must divide heads 12"));
  }
  SECTION("tensor parallelism must divide the key/value heads, or be a multiple of them") {
    // heads 12 in 6 key/value groups: tensor 4 divides the heads but would split a key/value head between ranks.
    std::string yaml = t::replace_line(t::base_yaml(), "  d_model: 512", "  d_model: 768");
    yaml = t::replace_line(yaml, "  heads: 8", "  heads: 12\n  kv_heads: 6");
    yaml = t::replace_line(yaml, "  expert: 8", "  tensor: 4\n  data: 2");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "parallelism.tensor");
    CHECK(e.line() == t::line_in(yaml, "  tensor: 4"));
    CHECK(t::contains(e.message(), "tensor parallelism 4 must divide kv_heads 6 or be a multiple of it"));
    // tensor 2 divides them.
    CHECK_NOTHROW(t::load(t::replace_line(yaml, "  tensor: 4", "  tensor: 2\n  expert: 2")));
  }
  SECTION("tensor parallelism must divide the FFN sizes") {
    std::string yaml = t::replace_line(t::base_yaml(), "  d_ff: 2048", "  d_ff: 2044");
    yaml = t::replace_line(yaml, "  expert: 8", "  tensor: 8");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "parallelism.tensor");
    CHECK(t::contains(e.message(), "d_ff 2044"));
  }
  SECTION("more pipeline stages than layers") {
    std::string yaml = t::replace_line(t::base_yaml(), "  expert: 8", "  pipeline: 8");
    yaml = t::replace_line(yaml, "  experts: 8", "  experts: 0");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "parallelism.pipeline");
    CHECK(t::contains(e.message(), "8 pipeline stages but only 4 layers"));
  }
  SECTION("a placement order that is not a permutation of the four axes") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  expert: 8", "  expert: 8\n  placement: tensor,expert,data");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "parallelism.placement");
    CHECK(t::contains(e.message(), "give each of tensor, expert, data and pipeline once"));
  }
}

TEST_CASE("scenario::resolve: model shape checks", "[scenario][resolve]") {
  SECTION("top_k > experts") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  top_k: 2", "  top_k: 9");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model.top_k");
    CHECK(e.line() == t::line_in(yaml, "top_k: 9"));
    CHECK(e.column() == t::column_in(yaml, "top_k: 9", "9"));
    CHECK(t::contains(e.message(), "top_k 9 exceeds the number of experts 8"));
  }
  SECTION("d_model not divisible by heads without d_head") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  heads: 8", "  heads: 7");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model.heads");
    CHECK(t::contains(e.message(), "d_model 512 is not divisible by heads 7; give model.d_head"));
  }
  SECTION("moe_every beyond the stack") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  moe_every: 2", "  moe_every: 5");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model.moe_every");
    CHECK(t::contains(e.message(), "moe_every 5 exceeds the layers of the stack (4)"));
  }
}

TEST_CASE("scenario::resolve: layers vs encoder/decoder layers", "[scenario][resolve]") {
  SECTION("decoder_only with encoder_layers") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  layers: 4", "  layers: 4\n  encoder_layers: 2");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model.encoder_layers");
    CHECK(e.line() == t::line_in(yaml, "encoder_layers: 2"));
    CHECK(t::contains(e.message(), "only for architecture encoder_decoder"));
    CHECK(t::contains(e.message(), "model.layers"));
  }
  SECTION("decoder_only with decoder_layers") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  layers: 4", "  decoder_layers: 4");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model.decoder_layers");
  }
  SECTION("decoder_only without layers") {
    const std::string yaml = t::remove_line(t::base_yaml(), "  layers: 4");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model");
    CHECK(t::contains(e.message(), "model.layers"));
  }
  SECTION("encoder_decoder with layers") {
    const std::string yaml =
        t::replace_line(t::base_yaml(), "  layers: 4", "  architecture: encoder_decoder\n  layers: 4");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model.layers");
    CHECK(e.line() == t::line_in(yaml, "  layers: 4"));
    CHECK(t::contains(e.message(), "model.encoder_layers and model.decoder_layers"));
  }
  SECTION("encoder_decoder without decoder_layers") {
    const std::string yaml =
        t::replace_line(t::base_yaml(), "  layers: 4", "  architecture: encoder_decoder\n  encoder_layers: 4");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "model");
    CHECK(t::contains(e.message(), "encoder_decoder needs model.encoder_layers and model.decoder_layers"));
  }
}

TEST_CASE("scenario::resolve: the batch must split into whole sequences per replica and micro-batch",
          "[scenario][resolve]") {
  SECTION("not a whole number of sequences") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  batch_tokens: 65536", "  batch_tokens: 65600");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "training.batch_tokens");
    CHECK(e.line() == t::line_in(yaml, "batch_tokens: 65600"));
    CHECK(t::contains(e.message(), "65600 tokens is not a whole number of 1024-token sequences"));
  }
  SECTION("fewer sequences than data-parallel replicas") {
    // 4096 tokens = 4 sequences over data x expert = 8 replicas.
    const std::string yaml = t::replace_line(t::base_yaml(), "  batch_tokens: 65536", "  batch_tokens: 4096");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "training.batch_tokens");
    CHECK(t::contains(e.message(), "4 sequences per step do not split"));
    CHECK(t::contains(e.message(), "8 data-parallel replicas"));
  }
  SECTION("sequences per replica not divisible into micro-batches") {
    // 64 sequences / 8 replicas = 8 per replica, not a multiple of 16 micro-batches.
    const std::string yaml = t::replace_line(t::base_yaml(), "  expert: 8", "  expert: 8\n  microbatches: 16");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "training.batch_tokens");
    CHECK(t::contains(e.message(), "64 sequences per step"));
    CHECK(t::contains(e.message(), "16 micro-batches"));
  }
  SECTION("not divisible over replicas") {
    // 12 sequences over 8 replicas.
    const std::string yaml = t::replace_line(t::base_yaml(), "  batch_tokens: 65536", "  batch_tokens: 12288");
    const auto e = t::load_error(yaml);
    CHECK(t::contains(e.message(), "12 sequences per step do not split"));
  }
  SECTION("a batch larger than the training run") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  tokens: 1.0e9", "  tokens: 1000");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "training.batch_tokens");
    CHECK(t::contains(e.message(), "exceeds training.tokens"));
  }
}

TEST_CASE("scenario::resolve: routing options must fit the routing type", "[scenario][resolve]") {
  SECTION("skew without zipf") {
    const std::string yaml = t::base_yaml() + "routing:\n  skew: 0.5\n";
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "routing.skew");
    CHECK(e.line() == t::line_in(yaml, "skew: 0.5"));
    CHECK(t::contains(e.message(), "only used with routing.type zipf"));
  }
  SECTION("skew with zipf is fine") { CHECK_NOTHROW(t::load(t::base_yaml() + "routing:\n  type: zipf\n  skew: 0.5\n")); }
  SECTION("load_vector without load") {
    const auto e = t::load_error(t::base_yaml() + "routing:\n  type: load_vector\n");
    CHECK(e.key() == "routing");
    CHECK(t::contains(e.message(), "needs routing.load"));
  }
  SECTION("load vector length != experts") {
    const std::string yaml = t::base_yaml() + "routing:\n  type: load_vector\n  load: [1, 2, 3]\n";
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "routing.load");
    CHECK(e.line() == t::line_in(yaml, "load: [1, 2, 3]"));
    CHECK(t::contains(e.message(), "has 3 values but the model has 8 experts"));
  }
  SECTION("negative load") {
    const auto e = t::load_error(t::base_yaml() + "routing:\n  type: load_vector\n  load: [1, 1, 1, 1, 1, 1, 1, -1]\n");
    CHECK(e.key() == "routing.load");
    CHECK(t::contains(e.message(), ">= 0"));
  }
  SECTION("all-zero load") {
    const auto e = t::load_error(t::base_yaml() + "routing:\n  type: load_vector\n  load: [0, 0, 0, 0, 0, 0, 0, 0]\n");
    CHECK(e.key() == "routing.load");
    CHECK(t::contains(e.message(), "at least one load must be > 0"));
  }
  SECTION("load with another routing type") {
    const auto e = t::load_error(t::base_yaml() + "routing:\n  load: [1, 1, 1, 1, 1, 1, 1, 1]\n");
    CHECK(e.key() == "routing.load");
    CHECK(t::contains(e.message(), "only used with routing.type load_vector"));
  }
}

TEST_CASE("scenario::resolve: top-2 gating policy and group split", "[scenario][resolve][routing]") {
  SECTION("the policies and the gate load") {
    const auto s = t::load(t::base_yaml() + "routing:\n  second_expert_policy: threshold\n  second_expert_threshold: 0.2\n"
                                            "  second_gate: 0.1\n");
    CHECK(s.routing.second_expert_policy == moesim::scenario::SecondExpertPolicy::threshold);
    CHECK(s.routing.second_expert_threshold == 0.2);
    CHECK(s.routing.second_gate == 0.1);
    CHECK(t::load(t::base_yaml() + "routing:\n  second_expert_policy: none\n").routing.second_expert_policy ==
          moesim::scenario::SecondExpertPolicy::none);
  }
  SECTION("an unknown policy lists the allowed ones") {
    const std::string yaml = t::base_yaml() + "routing:\n  second_expert_policy: sampling\n";
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "routing.second_expert_policy");
    CHECK(e.line() == t::line_in(yaml, "second_expert_policy: sampling"));
    CHECK(t::contains(e.message(), "all, none, threshold, random"));
  }
  SECTION("random and threshold need the threshold") {
    for (const char* policy : {"random", "threshold"}) {
      INFO(policy);
      const auto e = t::load_error(t::base_yaml() + "routing:\n  second_expert_policy: " + policy + "\n");
      CHECK(e.key() == "routing");
      CHECK(t::contains(e.message(), "needs routing.second_expert_threshold"));
      CHECK(t::contains(e.message(), "0.2"));
    }
  }
  SECTION("the threshold and the gate only with random or threshold") {
    auto e = t::load_error(t::base_yaml() + "routing:\n  second_expert_threshold: 0.2\n");
    CHECK(e.key() == "routing.second_expert_threshold");
    CHECK(t::contains(e.message(), "only used with routing.second_expert_policy threshold or random"));
    e = t::load_error(t::base_yaml() + "routing:\n  second_expert_policy: none\n  second_gate: 0.2\n");
    CHECK(e.key() == "routing.second_gate");
    CHECK(t::contains(e.message(), "only used with routing.second_expert_policy threshold or random"));
  }
  SECTION("a policy needs top-2 routing") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  top_k: 2", "  top_k: 1") +
                             "routing:\n  second_expert_policy: random\n  second_expert_threshold: 0.2\n";
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "routing.second_expert_policy");
    CHECK(t::contains(e.message(), "model.top_k is 1"));
    CHECK(t::contains(e.message(), "allowed with top_k 1: all"));
  }
  SECTION("gate and threshold out of range") {
    auto e = t::load_error(t::base_yaml() + "routing:\n  second_expert_policy: random\n  second_expert_threshold: 0.2\n"
                                            "  second_gate: 0.7\n");
    CHECK(e.key() == "routing.second_gate");
    CHECK(t::contains(e.message(), "0.5"));
    e = t::load_error(t::base_yaml() + "routing:\n  second_expert_policy: random\n  second_expert_threshold: 0\n");
    CHECK(e.key() == "routing.second_expert_threshold");
  }
  SECTION("Mesh-TensorFlow group split needs the group size") {
    const auto e = t::load_error(t::base_yaml() + "routing:\n  group_split: mesh_tensorflow\n");
    CHECK(e.key() == "routing.group_split");
    CHECK(t::contains(e.message(), "give routing.group_size_tokens"));
    CHECK_NOTHROW(t::load(t::base_yaml() + "routing:\n  group_split: mesh_tensorflow\n  group_size_tokens: 1024\n"));
  }
  SECTION("an unknown group split lists the allowed ones") {
    const auto e = t::load_error(t::base_yaml() + "routing:\n  group_split: gshard\n  group_size_tokens: 1024\n");
    CHECK(e.key() == "routing.group_split");
    CHECK(t::contains(e.message(), "fixed, mesh_tensorflow"));
  }
}

TEST_CASE("scenario::resolve: placement shares and multi-site links", "[scenario][resolve]") {
  SECTION("shares not summing to 1") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  - datacenter: gcp_us_central1_2023",
                                             "  - datacenter: gcp_us_central1_2023\n    share: 0.5");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "placement");
    CHECK(e.line() == t::line_in(yaml, "- datacenter: gcp_us_central1_2023"));
    CHECK(t::contains(e.message(), "shares sum to 0.5 but must sum to 1"));
  }
  SECTION("two sites summing to 0.75") {
    // The sum is checked before any one share: 0.25 x data 2 is half a replica only because the shares do not add up.
    const std::string yaml = two_site_yaml("0.5", "0.25", true);
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "placement");
    CHECK(e.line() == t::line_in(yaml, "- datacenter: gcp_us_central1_2023"));
    CHECK(t::contains(e.message(), "shares sum to 0.75 but must sum to 1 (placement[0].share 0.5 + placement[1].share 0.25)"));
    CHECK_FALSE(t::contains(e.message(), "data groups"));
  }
  SECTION("summing to 1 but half a data group") {
    const std::string yaml = two_site_yaml("0.25", "0.75", true);
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "placement[0].share");
    CHECK(e.line() == t::line_in(yaml, "share: 0.25"));
    CHECK(t::contains(e.message(), "share 0.25 of the data split (degree 2) is not a whole number of data groups (0.5)"));
  }
  SECTION("two sites summing to 1.5") {
    const auto e = t::load_error(two_site_yaml("0.5", "1.0", true));
    CHECK(e.key() == "placement");
    CHECK(t::contains(e.message(), "shares sum to 1.5 but must sum to 1"));
  }
  SECTION("several datacenters without wan") {
    const std::string yaml = two_site_yaml("0.5", "0.5", false);
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "wan");
    CHECK(t::contains(e.message(), "wan.bandwidth_gbps and wan.latency_ms"));
  }
  SECTION("several datacenters with half a wan") {
    const std::string yaml = two_site_yaml("0.5", "0.5", false) + "wan:\n  bandwidth_gbps: 100\n";
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "wan");
    CHECK(e.line() == t::line_in(yaml, "bandwidth_gbps: 100"));
  }
  SECTION("an empty placement list") {
    const std::string yaml = t::replace_line(t::remove_line(t::base_yaml(), "  - datacenter: gcp_us_central1_2023"),
                                             "placement:", "placement: []");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "placement");
    CHECK(t::contains(e.message(), "at least one datacenter"));
  }
}

TEST_CASE("scenario::resolve: topology must fit the accelerator and the chip count", "[scenario][resolve]") {
  SECTION("torus dims product != count") {
    const std::string yaml = t::replace_line(tpu_yaml(), "  count: 4", "  count: 4\n  topology: {type: torus_2d, dims: [2, 3]}");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "cluster.topology.dims");
    CHECK(e.line() == t::line_in(yaml, "dims: [2, 3]"));
    CHECK(e.column() == t::column_in(yaml, "dims: [2, 3]", "[2, 3]"));
    CHECK(t::contains(e.message(), "= 6 but cluster.count = 4"));
  }
  SECTION("torus dims of the wrong rank") {
    const auto e = t::load_error(t::replace_line(tpu_yaml(), "  count: 4", "  count: 4\n  topology: {type: torus_2d, dims: [2, 2, 1]}"));
    CHECK(e.key() == "cluster.topology.dims");
    CHECK(t::contains(e.message(), "torus_2d needs 2 dimensions, got 3"));
  }
  SECTION("a torus on a GPU") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  count: 8", "  count: 8\n  topology: {type: torus_2d}");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "cluster.topology.type");
    CHECK(e.line() == t::line_in(yaml, "type: torus_2d"));
    CHECK(t::contains(e.message(), "h100"));
    CHECK(t::contains(e.message(), "allowed: nvlink_fat_tree"));
  }
  SECTION("a fat-tree on a TPU") {
    const auto e = t::load_error(t::replace_line(tpu_yaml(), "  count: 4", "  count: 4\n  topology: {type: nvlink_fat_tree}"));
    CHECK(e.key() == "cluster.topology.type");
    CHECK(t::contains(e.message(), "tpu_v3"));
    CHECK(t::contains(e.message(), "allowed: torus_2d, torus_3d"));
  }
  SECTION("torus dims on a fat-tree") {
    const auto e = t::load_error(t::replace_line(t::base_yaml(), "  count: 8", "  count: 8\n  topology: {dims: [2, 4]}"));
    CHECK(e.key() == "cluster.topology.dims");
    CHECK(t::contains(e.message(), "only for torus topologies"));
  }
  SECTION("GPU count not a multiple of gpus_per_node") {
    const std::string yaml = t::replace_line(t::base_yaml(), "  count: 8", "  count: 12");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "cluster.count");
    CHECK(e.line() == t::line_in(yaml, "count: 12"));
    CHECK(t::contains(e.message(), "12 GPUs do not fill whole nodes of 8 GPUs"));
  }
  SECTION("GPU count vs an explicit gpus_per_node") {
    const auto e = t::load_error(t::replace_line(t::base_yaml(), "  count: 8", "  count: 8\n  topology: {gpus_per_node: 3}"));
    CHECK(e.key() == "cluster.count");
    CHECK(t::contains(e.message(), "8 GPUs do not fill whole nodes of 3 GPUs"));
  }
}

TEST_CASE("scenario::resolve: parallelism.schedule names what virtual_stages decides", "[scenario][resolve]") {
  // 4 layers on 2 stages of 2 chunks each; data 4 x pipeline 2 = 8 GPUs, 2 micro-batches (a multiple of the stages).
  const std::string base = t::replace_line(t::base_yaml(), "  expert: 8", "  data: 4\n  pipeline: 2\n  microbatches: 2");
  SECTION("left out: 1f1b with one chunk, interleaved_1f1b with several") {
    CHECK(t::load(base).parallelism.schedule == "1f1b");
    CHECK(t::load(base, {"parallelism.virtual_stages=2"}).parallelism.schedule == "interleaved_1f1b");
  }
  SECTION("interleaved_1f1b with its chunks") {
    const auto s = t::load(base, {"parallelism.schedule=interleaved_1f1b", "parallelism.virtual_stages=2"});
    CHECK(s.parallelism.schedule == "interleaved_1f1b");
    CHECK(s.parallelism.virtual_stages == 2);
  }
  SECTION("interleaved_1f1b without chunks: an error that says to set virtual_stages") {
    const auto e = t::load_error(base, {"parallelism.schedule=interleaved_1f1b"});
    CHECK(e.key() == "parallelism.schedule");
    CHECK(t::contains(e.message(), "parallelism.virtual_stages"));
  }
  SECTION("1f1b named against several chunks: an error naming interleaved_1f1b") {
    const auto e = t::load_error(base, {"parallelism.schedule=1f1b", "parallelism.virtual_stages=2"});
    CHECK(e.key() == "parallelism.schedule");
    CHECK(t::contains(e.message(), "interleaved_1f1b"));
  }
}

TEST_CASE("scenario::resolve: cluster.power_limit_w is a GPU setting between active and full power", "[scenario][resolve]") {
  SECTION("a limit inside the range is kept") {
    const moesim::scenario::Scenario s = t::load(t::base_yaml(), {"cluster.power_limit_w=500"});
    REQUIRE(s.cluster.power_limit_w.has_value());
    CHECK(*s.cluster.power_limit_w == 500.0);
    CHECK_FALSE(t::load(t::base_yaml()).cluster.power_limit_w.has_value());
  }
  SECTION("below the active power: refused with the range and where it comes from") {
    const auto e = t::load_error(t::base_yaml(), {"cluster.power_limit_w=100"});
    CHECK(e.key() == "cluster.power_limit_w");
    CHECK(t::contains(e.message(), "100 W is outside"));
    CHECK(t::contains(e.message(), "active power 145 W"));
    CHECK(t::contains(e.message(), "full power 700 W"));
  }
  SECTION("above the full power: refused") {
    const auto e = t::load_error(t::base_yaml(), {"cluster.power_limit_w=800"});
    CHECK(e.key() == "cluster.power_limit_w");
    CHECK(t::contains(e.message(), "at most its full power 700 W"));
  }
  SECTION("on a TPU: refused") {
    const auto e = t::load_error(tpu_yaml(), {"cluster.power_limit_w=200"});
    CHECK(e.key() == "cluster.power_limit_w");
    CHECK(t::contains(e.message(), "GPU setting"));
  }
}

TEST_CASE("scenario::resolve: the per-node expert dispatch and node-limited routing", "[scenario][resolve]") {
  SECTION("kept on a GPU MoE") {
    const moesim::scenario::Scenario s =
        t::load(t::base_yaml(), {"parallelism.expert_dispatch=per_node", "routing.max_nodes=4"});
    CHECK(s.parallelism.expert_dispatch == "per_node");
    CHECK(s.routing.max_nodes == 4);
    const moesim::scenario::Scenario d = t::load(t::base_yaml());
    CHECK(d.parallelism.expert_dispatch == "all_to_all");
    CHECK(d.routing.max_nodes == 0);
  }
  SECTION("node-limited routing without the per-node dispatch would change nothing: refused") {
    const auto e = t::load_error(t::base_yaml(), {"routing.max_nodes=4"});
    CHECK(e.key() == "routing.max_nodes");
    CHECK(t::contains(e.message(), "parallelism.expert_dispatch: per_node"));
  }
  SECTION("per_node on a TPU torus: refused") {
    const auto e = t::load_error(tpu_yaml(), {"parallelism.expert_dispatch=per_node"});
    CHECK(e.key() == "parallelism.expert_dispatch");
    CHECK(t::contains(e.message(), "TPU"));
  }
  SECTION("an unknown dispatch lists the allowed ones") {
    const auto e = t::load_error(t::base_yaml(), {"parallelism.expert_dispatch=deepep"});
    CHECK(e.key() == "parallelism.expert_dispatch");
    CHECK(t::contains(e.message(), "per_node"));
  }
}

TEST_CASE("scenario::resolve: the expert-communication overlap and its SMs", "[scenario][resolve][overlap]") {
  SECTION("kept on a GPU MoE with expert parallelism, 20 SMs unless given") {
    const moesim::scenario::Scenario s = t::load(t::base_yaml(), {"parallelism.overlap_expert_comm=true"});
    CHECK(s.parallelism.overlap_expert_comm);
    CHECK(s.parallelism.comm_sms == 20);
    CHECK(t::load(t::base_yaml(), {"parallelism.overlap_expert_comm=true", "parallelism.comm_sms=24"}).parallelism.comm_sms == 24);
    CHECK_FALSE(t::load(t::base_yaml()).parallelism.overlap_expert_comm);
  }
  SECTION("as many SMs as the GPU has leave none for compute: refused with the range") {
    const auto e = t::load_error(t::base_yaml(), {"parallelism.overlap_expert_comm=true", "parallelism.comm_sms=132"});
    CHECK(e.key() == "parallelism.comm_sms");
    CHECK(t::contains(e.message(), "1 to 131"));
  }
  SECTION("comm_sms without the overlap: refused") {
    const auto e = t::load_error(t::base_yaml(), {"parallelism.comm_sms=24"});
    CHECK(e.key() == "parallelism.comm_sms");
    CHECK(t::contains(e.message(), "overlap_expert_comm"));
  }
  SECTION("a TPU, a dense model, expert 1, ZeRO-3: refused") {
    CHECK(t::contains(t::load_error(tpu_yaml(), {"parallelism.overlap_expert_comm=true"}).message(), "TPU"));
    const auto dense = t::load_error(t::base_yaml(), {"parallelism.overlap_expert_comm=true", "model.experts=0",
                                                       "parallelism.expert=1", "parallelism.data=8"});
    CHECK(dense.key() == "parallelism.overlap_expert_comm");
    const auto one = t::load_error(t::base_yaml(), {"parallelism.overlap_expert_comm=true", "parallelism.expert=1",
                                                     "parallelism.data=8"});
    CHECK(t::contains(one.message(), "parallelism.expert"));
    const auto z3 = t::load_error(t::base_yaml(), {"parallelism.overlap_expert_comm=true", "parallelism.zero_stage=3"});
    CHECK(t::contains(z3.message(), "zero_stage"));
  }
  SECTION("pipelining needs the interleaved schedule, as Megatron-Core's combined 1F1B does") {
    const auto e = t::load_error(t::base_yaml(), {"parallelism.overlap_expert_comm=true", "parallelism.expert=4",
                                                   "parallelism.pipeline=2", "parallelism.microbatches=4"});
    CHECK(e.key() == "parallelism.overlap_expert_comm");
    CHECK(t::contains(e.message(), "virtual_stages"));
    CHECK(t::contains(e.message(), "schedule dualpipe or dualpipev"));
    CHECK_NOTHROW(t::load(t::base_yaml(), {"parallelism.overlap_expert_comm=true", "parallelism.expert=4", "parallelism.pipeline=2",
                                           "parallelism.virtual_stages=2", "parallelism.microbatches=4"}));
    CHECK_NOTHROW(t::load(t::base_yaml(), {"parallelism.overlap_expert_comm=true", "parallelism.expert=4", "parallelism.pipeline=2",
                                           "parallelism.schedule=dualpipe", "parallelism.microbatches=4"}));
  }
}

TEST_CASE("scenario::resolve: first_stage_layers and last_stage_layers leave every stage a layer", "[scenario][resolve]") {
  const std::vector<std::string> pipe{"parallelism.expert=4", "parallelism.pipeline=2", "parallelism.microbatches=2"};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), pipe.begin(), pipe.end());
    return extra;
  };
  CHECK(t::load(t::base_yaml(), with({"parallelism.last_stage_layers=1"})).parallelism.last_stage_layers == 1);
  CHECK(t::load(t::base_yaml()).parallelism.first_stage_layers == 0);
  SECTION("no pipeline") {
    const auto e = t::load_error(t::base_yaml(), {"parallelism.first_stage_layers=2"});
    CHECK(e.key() == "parallelism.first_stage_layers");
    CHECK(t::contains(e.message(), "pipeline > 1"));
  }
  SECTION("all layers on the last stage leave none for the first") {
    const auto e = t::load_error(t::base_yaml(), with({"parallelism.last_stage_layers=4"}));
    CHECK(e.key() == "parallelism.last_stage_layers");
    CHECK(t::contains(e.message(), "at least one"));
  }
  SECTION("two stages: the two counts must add up to the model's 4 layers") {
    const auto e = t::load_error(t::base_yaml(), with({"parallelism.first_stage_layers=1", "parallelism.last_stage_layers=2"}));
    CHECK(t::contains(e.message(), "add up"));
  }
  SECTION("interleaved stages: refused") {
    const auto e = t::load_error(t::base_yaml(), {"parallelism.expert=4", "parallelism.pipeline=2", "parallelism.virtual_stages=2",
                                                  "parallelism.microbatches=2", "parallelism.last_stage_layers=1"});
    CHECK(t::contains(e.message(), "virtual_stages"));
  }
}

TEST_CASE("scenario::resolve: training.recompute_modules names modules the model has, for selective recomputation",
          "[scenario][resolve][recompute_modules]") {
  const auto kept = t::load(t::base_yaml(), {"training.rematerialization=selective", "training.recompute_modules=layernorm,moe_act"});
  CHECK(kept.training.recompute.layernorm);
  CHECK(kept.training.recompute.moe_act);
  CHECK_FALSE(kept.training.recompute.core_attn);
  CHECK(t::load(t::base_yaml()).training.recompute.core_attn);  // the default: Korthikanti et al.'s attention core
  // Without selective recomputation the resolved scenario has no modules, so it reloads as it was stored.
  for (const char* remat : {"none", "full", "selective"}) {
    INFO(remat);
    const auto s = t::load(t::base_yaml(), {std::string("training.rematerialization=") + remat});
    CHECK(s.resolved["training"].contains("recompute_modules") == (std::string(remat) == "selective"));
    nlohmann::json again = s.resolved;
    again["model"].erase("encoder_layers");
    again["model"].erase("decoder_layers");
    CHECK(t::load(again.dump()).resolved == s.resolved);
  }
  auto error_of = [](const std::vector<std::string>& sets) {
    const auto e = t::load_error(t::base_yaml(), sets);
    CHECK(e.key() == "training.recompute_modules");
    return e.message();
  };
  CHECK(t::contains(error_of({"training.recompute_modules=core_attn,norms"}), "allowed: core_attn, layernorm, mla_up_proj, moe_act"));
  CHECK(t::contains(error_of({"training.recompute_modules=mla_up_proj"}), "model.mla"));
  CHECK(t::contains(error_of({"training.recompute_modules=' , '"}), "at least one"));
  CHECK(t::contains(error_of({"training.rematerialization=full", "training.recompute_modules=layernorm"}), "not full"));
  const auto dense = t::load_error(t::base_yaml(), {"model.experts=0", "parallelism.expert=1", "parallelism.data=8",
                                                    "training.recompute_modules=moe_act"});
  CHECK(t::contains(dense.message(), "no experts"));
}

TEST_CASE("scenario::resolve: overlap_shared_experts needs shared experts and no paired overlap", "[scenario][resolve][overlap]") {
  const auto none = t::load_error(t::base_yaml(), {"parallelism.overlap_shared_experts=true"});
  CHECK(none.key() == "parallelism.overlap_shared_experts");
  CHECK(t::contains(none.message(), "shared_experts"));
  CHECK(t::load(t::base_yaml(), {"model.shared_experts=1", "parallelism.overlap_shared_experts=true"}).parallelism.overlap_shared_experts);
  const auto both = t::load_error(t::base_yaml(), {"model.shared_experts=1", "parallelism.overlap_shared_experts=true",
                                                   "parallelism.overlap_expert_comm=true"});
  CHECK(both.key() == "parallelism.overlap_shared_experts");
}

TEST_CASE("scenario::resolve: overlap_tensor_comm needs sequence parallelism", "[scenario][resolve][overlap]") {
  const auto e = t::load_error(t::base_yaml(), {"parallelism.overlap_tensor_comm=true"});
  CHECK(e.key() == "parallelism.overlap_tensor_comm");
  CHECK(t::contains(e.message(), "parallelism.sequence_parallel: true"));
  const std::vector<std::string> sp = {"parallelism.tensor=2", "parallelism.expert=4", "parallelism.sequence_parallel=true",
                                       "parallelism.overlap_tensor_comm=true"};
  CHECK(t::load(t::base_yaml(), sp).parallelism.overlap_tensor_comm);
  auto paired = sp;
  paired.push_back("parallelism.overlap_expert_comm=true");
  const auto both = t::load_error(t::base_yaml(), paired);
  CHECK(both.key() == "parallelism.overlap_tensor_comm");
  CHECK(t::contains(both.message(), "overlap_expert_comm"));
}
