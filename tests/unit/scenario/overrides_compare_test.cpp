// SPDX-License-Identifier: Apache-2.0
// Command-line `--set` overrides and `compare:` alternatives (load_alternatives, `--alt`).

#include <catch2/catch.hpp>

#include "moesim/scenario/fields.hpp"
#include "scenario_test_support.hpp"

using moesim::InputError;
using moesim::scenario::load_alternatives;
using moesim::scenario::load_file;
namespace t = moesim::scenario::test;

TEST_CASE("scenario::load_string: --set overrides are typed and applied on top of the file", "[scenario][overrides]") {
  SECTION("scalars of every kind") {
    const auto s = t::load(t::base_yaml(), {"cluster.count=16", "parallelism.data=2", "model.capacity_factor=2",
                                            "routing.dropless=true", "name=renamed", "model.dtype=fp16"});
    CHECK(s.cluster.count == 16);
    CHECK(s.parallelism.data == 2);
    CHECK(s.parallelism.expert == 8);  // untouched keys of the same section are kept
    CHECK(s.model.capacity_factor == 2.0);
    CHECK(s.routing.dropless);
    CHECK(s.name == "renamed");
    CHECK(s.model.dtype == "fp16");
    CHECK(s.resolved["cluster"]["count"] == 16);
  }
  SECTION("a list value replaces the list") {
    std::string yaml = t::replace_line(t::base_yaml(), "  accelerator: h100", "  accelerator: tpu_v3");
    yaml = t::replace_line(yaml, "  count: 8", "  count: 4\n  topology: {type: torus_2d, dims: [2, 2]}");
    const auto s = t::load(yaml, {"cluster.count=8", "cluster.topology.dims=[4, 2]", "parallelism.data=2"});
    CHECK(s.cluster.topology.dims == std::vector<int>{4, 2});
    CHECK(s.cluster.topology.type == "torus_2d");  // the sibling key survives the merge
  }
  SECTION("later overrides win") {
    const auto s = t::load(t::base_yaml(), {"seed=3", "seed=5"});
    CHECK(s.seed == 5u);
  }
}

TEST_CASE("scenario::load_string: --set errors are located as \"--set ...\"", "[scenario][overrides]") {
  SECTION("wrong type") {
    const auto e = t::load_error(t::base_yaml(), {"model.d_model=abc"});
    CHECK(e.file() == "--set model.d_model=abc");
    CHECK(e.key() == "model.d_model");
    CHECK(t::contains(e.message(), "expected an integer, got 'abc'"));
    CHECK(t::contains(e.what(), "--set model.d_model=abc"));
  }
  SECTION("unknown key") {
    const auto e = t::load_error(t::base_yaml(), {"model.d_modle=5"});
    CHECK(e.file() == "--set model.d_modle=5");
    CHECK(e.key() == "model.d_modle");
    CHECK(t::contains(e.message(), "did you mean 'd_model'?"));
  }
  SECTION("unknown section") {
    const auto e = t::load_error(t::base_yaml(), {"modle.d_model=5"});
    CHECK(e.key() == "modle");
    CHECK(t::contains(e.message(), "did you mean 'model'?"));
  }
  SECTION("no '=' or no key") {
    for (const std::string bad : {"model.d_model", "=5"}) {
      INFO(bad);
      const auto e = t::load_error(t::base_yaml(), {bad});
      CHECK(e.file() == "--set " + bad);
      CHECK(t::contains(e.message(), "expected KEY.PATH=VALUE"));
    }
  }
  SECTION("YAML syntax error in the value") {
    const auto e = t::load_error(t::base_yaml(), {"cluster.topology.dims=[2, 2"});
    CHECK(e.file() == "--set cluster.topology.dims=[2, 2");
    CHECK(t::contains(e.message(), "YAML syntax error"));
  }
  SECTION("out of range") {
    const auto e = t::load_error(t::base_yaml(), {"model.heads=0"});
    CHECK(e.file() == "--set model.heads=0");
    CHECK(t::contains(e.message(), "must be >= 1"));
  }
  SECTION("a cross-field error caused by an override points at the override, not the file") {
    const auto e = t::load_error(t::base_yaml(), {"model.top_k=9"});
    CHECK(e.file() == "--set model.top_k=9");
    CHECK(e.key() == "model.top_k");
    CHECK(t::contains(e.message(), "top_k 9 exceeds"));
  }
}

TEST_CASE("scenario::load_alternatives: overlays deep-merge mappings and replace lists", "[scenario][compare]") {
  const std::string file = t::data("compare_ok.yaml");
  const auto base = load_file(file, t::real_catalog());
  REQUIRE(base.placement.size() == 2);
  REQUIRE(base.compare.is_array());
  CHECK(base.compare.size() == 2);
  CHECK_FALSE(base.resolved.contains("compare"));  // the resolved record holds the scenario only

  const auto alts = load_alternatives(file, t::real_catalog());
  REQUIRE(alts.size() == 2);
  CHECK(alts[0].label == "one_site");
  CHECK(alts[1].label == "top1");
  SECTION("a list is replaced, not merged or appended") {
    const auto& s = alts[0].scenario;
    REQUIRE(s.placement.size() == 1);
    CHECK(s.placement[0].datacenter == "gcp_us_central1_2023");
    CHECK(s.placement[0].share == 1.0);  // the default again, not the base's 0.5
  }
  SECTION("a mapping is merged key by key") {
    const auto& s = alts[1].scenario;
    CHECK(s.model.top_k == 1);
    CHECK(s.model.d_model == base.model.d_model);
    CHECK(s.model.experts == base.model.experts);
    CHECK(s.model.decoder_layers == base.model.decoder_layers);
    CHECK(s.placement.size() == 2);
    CHECK(s.name == base.name);
  }
  SECTION("the base itself is untouched by its alternatives") { CHECK(base.model.top_k == 2); }
  SECTION("--set applies to every alternative") {
    const auto with_set = load_alternatives(file, t::real_catalog(), {"seed=7"});
    REQUIRE(with_set.size() == 2);
    for (const auto& a : with_set) CHECK(a.scenario.seed == 7u);
  }
  SECTION("--alt adds an alternative after the file's ones") {
    const auto more = load_alternatives(file, t::real_catalog(), {},
                                        {"{label: bigger, cluster: {count: 16}, parallelism: {data: 4}}"});
    REQUIRE(more.size() == 3);
    CHECK(more[2].label == "bigger");
    CHECK(more[2].scenario.cluster.count == 16);
    CHECK(more[2].scenario.parallelism.data == 4);
    CHECK(more[2].scenario.parallelism.expert == 4);  // from the base
    CHECK(more[2].scenario.cluster.accelerator == "h100");
  }
}

TEST_CASE("scenario::load_alternatives: bad alternatives are refused with their location", "[scenario][compare]") {
  SECTION("duplicate labels") {
    const std::string file = t::data("compare_dup_label.yaml");
    const auto e = t::expect_input_error([&] { load_alternatives(file, t::real_catalog()); });
    CHECK(e.file() == file);
    CHECK(e.key() == "compare[].label");
    // The second `label: a` is the duplicate.
    const auto lines = t::lines_of(t::slurp(file));
    int second = 0, seen = 0;
    for (std::size_t i = 0; i < lines.size(); ++i)
      if (lines[i].find("label: a") != std::string::npos && ++seen == 2) second = static_cast<int>(i) + 1;
    REQUIRE(second > 0);
    CHECK(e.line() == second);
    CHECK(t::contains(e.message(), "duplicate alternative label 'a'"));
  }
  SECTION("overriding name is refused") {
    const std::string file = t::data("compare_override_name.yaml");
    const auto e = t::expect_input_error([&] { load_alternatives(file, t::real_catalog()); });
    CHECK(e.key() == "compare[].name");
    CHECK(e.line() == t::line_in(t::slurp(file), "    name: other"));
    CHECK(t::contains(e.message(), "cannot override `name`"));
  }
  SECTION("overriding compare is refused (--alt)") {
    const auto e = t::expect_input_error([&] {
      load_alternatives(t::data("compare_ok.yaml"), t::real_catalog(), {}, {"{label: x, compare: []}"});
    });
    CHECK(e.key() == "compare[].compare");
    CHECK(t::contains(e.message(), "cannot override `compare`"));
  }
  SECTION("an alternative whose merged scenario fails a check is named, with where it is") {
    // The check blames `parallelism` (the base file's line), but the alternative's cluster.count made it fail.
    const std::string alt = "{label: big, cluster: {count: 16}}";
    const std::string file = t::data("compare_ok.yaml");
    const auto e = t::expect_input_error([&] { load_alternatives(file, t::real_catalog(), {}, {alt}); });
    CHECK(e.key() == "parallelism");
    CHECK(e.file() == file);
    CHECK(t::contains(e.message(), "in alternative 'big' (--alt " + alt + ":1): "));
    CHECK(t::contains(e.message(), "16 devices"));
  }
  SECTION("--alt without a label") {
    const std::string alt = "{cluster: {count: 16}}";
    const auto e =
        t::expect_input_error([&] { load_alternatives(t::data("compare_ok.yaml"), t::real_catalog(), {}, {alt}); });
    CHECK(e.file() == "--alt " + alt);
    CHECK(t::contains(e.message(), "label"));
  }
  SECTION("--alt with a YAML syntax error") {
    const std::string alt = "{label: x, model: {top_k: 1}";
    const auto e =
        t::expect_input_error([&] { load_alternatives(t::data("compare_ok.yaml"), t::real_catalog(), {}, {alt}); });
    CHECK(e.file() == "--alt " + alt);
    CHECK(t::contains(e.message(), "YAML syntax error"));
  }
  SECTION("--alt reusing a label of the file") {
    const auto e = t::expect_input_error(
        [&] { load_alternatives(t::data("compare_ok.yaml"), t::real_catalog(), {}, {"{label: top1, seed: 2}"}); });
    CHECK(e.key() == "compare[].label");
    CHECK(t::contains(e.message(), "duplicate alternative label 'top1'"));
  }
  SECTION("--alt taking the label of the base (the scenario itself is compared as 'base')") {
    const std::string alt = "{label: base, seed: 3}";
    const auto e =
        t::expect_input_error([&] { load_alternatives(t::data("compare_ok.yaml"), t::real_catalog(), {}, {alt}); });
    CHECK(e.file() == "--alt " + alt);
    CHECK(e.key() == "compare[].label");
    CHECK(e.line() == 1);
    CHECK(t::contains(e.message(), "duplicate alternative label 'base'"));
    CHECK(t::contains(e.message(), "the scenario itself"));
  }
  SECTION("a `compare:` entry taking the label of the base") {
    const std::string file = t::data("compare_base_label.yaml");
    const std::string text = t::slurp(file);
    const auto e = t::expect_input_error([&] { load_alternatives(file, t::real_catalog()); });
    CHECK(e.file() == file);
    CHECK(e.key() == "compare[].label");
    CHECK(e.line() == t::line_in(text, "  - label: base"));
    CHECK(t::contains(e.message(), "duplicate alternative label 'base'"));
  }
  SECTION("--alt that is not a mapping") {
    const auto e = t::expect_input_error(
        [&] { load_alternatives(t::data("compare_ok.yaml"), t::real_catalog(), {}, {"[1, 2]"}); });
    CHECK(e.file() == "--alt [1, 2]");
  }
  SECTION("each alternative is fully validated: a cross-field error inside one") {
    const std::string file = t::data("compare_bad_value.yaml");
    REQUIRE_NOTHROW(load_file(file, t::real_catalog()));  // the base alone is valid
    const auto e = t::expect_input_error([&] { load_alternatives(file, t::real_catalog()); });
    CHECK(e.file() == file);
    CHECK(e.key() == "model.top_k");
    CHECK(e.line() == t::line_in(t::slurp(file), "top_k: 9"));
    CHECK(t::contains(e.message(), "top_k 9 exceeds the number of experts 8"));
  }
  SECTION("each alternative is fully validated: an unknown key inside one") {
    const std::string file = t::data("compare_unknown_key.yaml");
    const auto e = t::expect_input_error([&] { load_alternatives(file, t::real_catalog()); });
    CHECK(e.key() == "modle");
    CHECK(e.line() == t::line_in(t::slurp(file), "modle:"));
    CHECK(t::contains(e.message(), "did you mean 'model'?"));
  }
  SECTION("an alternative in --alt with a bad value") {
    const std::string alt = "{label: bad, model: {heads: 0}}";
    const auto e =
        t::expect_input_error([&] { load_alternatives(t::data("compare_ok.yaml"), t::real_catalog(), {}, {alt}); });
    CHECK(e.file() == "--alt " + alt);
    CHECK(e.key() == "model.heads");
  }
  SECTION("an alternative in --alt whose shares sum to 0.75 is told so, not that a share splits a data group") {
    const std::string alt = "{label: bad, placement: [{datacenter: gcp_us_central1_2023, share: 0.5}, "
                            "{datacenter: gcp_europe_west1_2023, share: 0.25}]}";
    const auto e =
        t::expect_input_error([&] { load_alternatives(t::data("compare_ok.yaml"), t::real_catalog(), {}, {alt}); });
    CHECK(e.file() == "--alt " + alt);
    CHECK(e.key() == "placement");
    CHECK(e.line() == 1);
    CHECK(e.column() == static_cast<int>(alt.find("[{datacenter")) + 1);
    CHECK(t::contains(e.message(), "in alternative 'bad'"));
    CHECK(t::contains(e.message(), "shares sum to 0.75 but must sum to 1 (placement[0].share 0.5 + placement[1].share 0.25)"));
    CHECK_FALSE(t::contains(e.message(), "data groups"));
  }
  SECTION("an alternative without a label is refused when the file loads") {
    const std::string file = t::data("compare_no_label.yaml");
    const auto e = t::expect_input_error([&] { load_file(file, t::real_catalog()); });
    CHECK(e.key() == "compare[0]");
    CHECK(e.line() == t::line_in(t::slurp(file), "- model: {top_k: 1}"));
    CHECK(t::contains(e.message(), "label"));
  }
  SECTION("a compare that is not a list") {
    const auto e = t::load_error(t::base_yaml() + "compare: {label: x}\n");
    CHECK(e.key() == "compare");
  }
}

TEST_CASE("scenario::load_alternatives: a scenario without compare has no alternatives", "[scenario][compare]") {
  const auto alts = load_alternatives(t::data("minimal.yaml"), t::real_catalog());
  CHECK(alts.empty());
}

TEST_CASE("scenario::load_string: an override that changes a mapping's type replaces the mapping", "[scenario][overrides]") {
  const std::string serving = std::string("name: s\nmodel:\n  layers: 4\n  d_model: 1024\n  d_ff: 4096\n  heads: 8\n  experts: 8\n"
                                          "  top_k: 2\n  vocab: 32000\n  seq_len: 4096\n") +
                              "serving:\n  arrival: {type: gamma, rate_per_s: 20, cv: 2}\n  prompt_length: {type: uniform, min: 50, max: 400}\n"
                              "  output_length: {type: fixed, value: 20}\n  duration_s: 4\n  pools:\n    - {replicas: 8}\n"
                              "cluster:\n  accelerator: h100\n  count: 8\nplacement:\n  - datacenter: gcp_us_central1_2023\n";
  SECTION("a mapping of another type: the old type's keys go with it") {
    const auto s = t::load(serving, {"serving.arrival={type: poisson, rate_per_s: 30}"});
    CHECK(s.serving->arrival.type == "poisson");
    CHECK(s.serving->arrival.rate_per_s == 30.0);
    // (Merged key by key, the gamma's cv would be refused: not used by arrival type poisson.)
  }
  SECTION("the type alone (a dotted --set of one key): the other keys stay, and one the new type does not use is refused") {
    // The gamma's rate_per_s serves poisson too; its cv does not, and is refused where the file gives it.
    const auto e = t::expect_input_error([&] { t::load(serving, {"serving.arrival.type=poisson"}); });
    CHECK(e.key() == "serving.arrival.cv");
    CHECK(e.line() == t::line_in(serving, "arrival:"));
    CHECK(t::contains(e.message(), "only used by arrival type gamma"));
    const auto s = t::load(serving, {"serving.arrival.type=poisson", "serving.arrival.cv=null"});
    CHECK(s.serving->arrival.type == "poisson");
    CHECK(s.serving->arrival.rate_per_s == 20.0);
  }
  SECTION("--set of a whole mapping of another type") {
    const auto s = t::load(serving, {"serving.prompt_length={type: fixed, value: 400}"});
    CHECK(s.serving->prompt_tokens.type == "fixed");
    CHECK(s.serving->prompt_tokens.value == 400);
  }
  SECTION("KEY=null removes a key, with its location: offline arrivals without the duration") {
    CHECK_THROWS_WITH(t::load(serving, {"serving.arrival={type: offline}", "serving.requests=200"}),
                      Catch::Contains("serving.duration_s: offline sends every request at time 0"));
    const auto s = t::load(serving, {"serving.arrival={type: offline}", "serving.duration_s=null", "serving.requests=200"});
    CHECK(s.serving->arrival.type == "offline");
    CHECK(s.serving->requests == 200);
  }
  SECTION("a text that is no YAML value is refused, not read as null (which would remove the key)") {
    // yaml-cpp reads ",,," and ", x" as null; "~" and "null" are null's spellings and do remove the key.
    for (const char* bad : {"serving.duration_s=,,,", "serving.duration_s= , x"}) {
      const auto e = t::expect_input_error([&] { t::load(serving, {bad}); });
      CHECK(e.key() == "serving.duration_s");
      CHECK(t::contains(e.message(), "cannot read"));
      CHECK(t::contains(e.message(), "as a YAML value"));
    }
    CHECK_THROWS_WITH(t::load(serving, {"serving.arrival={type: offline}", "serving.duration_s=~"}),
                      Catch::Contains("serving.requests"));
  }
  SECTION("the same type still merges key by key") {
    const auto s = t::load(serving, {"serving.prompt_length={type: uniform, max: 800}"});
    CHECK(s.serving->prompt_tokens.min == 50);
    CHECK(s.serving->prompt_tokens.max == 800);
  }
}

TEST_CASE("scenario::load_string: a dotted --set of a type keeps the section's other keys, in either order", "[scenario][overrides]") {
  const std::string serving = std::string("name: s\nmodel:\n  layers: 4\n  d_model: 1024\n  d_ff: 4096\n  heads: 8\n  experts: 8\n"
                                          "  top_k: 2\n  vocab: 32000\n  seq_len: 4096\n") +
                              "serving:\n  arrival: {type: offline}\n  prompt_length: {type: fixed, value: 100}\n"
                              "  output_length: {type: fixed, value: 20}\n  requests: 16\n  pools:\n    - {replicas: 8}\n"
                              "  scheduler: {type: continuous, max_sequences: 1}\n"
                              "cluster:\n  accelerator: h100\n  count: 8\nplacement:\n  - datacenter: gcp_us_central1_2023\n";
  const int default_max_sequences = moesim::scenario::find_field("serving.scheduler.max_sequences")->default_value.get<int>();
  REQUIRE(default_max_sequences != 1);  // else keeping max_sequences 1 would prove nothing
  SECTION("the type alone keeps max_sequences") {
    const auto s = t::load(serving, {"serving.scheduler.type=chunked_prefill"});
    CHECK(s.serving->scheduler == "chunked_prefill");
    CHECK(s.serving->max_sequences == 1);
  }
  SECTION("a key of the new type, then the type") {
    const auto s = t::load(serving, {"serving.scheduler.chunk_tokens=64", "serving.scheduler.type=chunked_prefill"});
    CHECK(s.serving->scheduler == "chunked_prefill");
    CHECK(s.serving->chunk_tokens == 64);
    CHECK(s.serving->max_sequences == 1);
  }
  SECTION("the type, then a key of the new type") {
    const auto s = t::load(serving, {"serving.scheduler.type=chunked_prefill", "serving.scheduler.chunk_tokens=64"});
    CHECK(s.serving->scheduler == "chunked_prefill");
    CHECK(s.serving->chunk_tokens == 64);
    CHECK(s.serving->max_sequences == 1);
  }
  SECTION("a whole mapping of another type still replaces the section: max_sequences back to its default") {
    const auto s = t::load(serving, {"serving.scheduler={type: chunked_prefill, chunk_tokens: 64}"});
    CHECK(s.serving->scheduler == "chunked_prefill");
    CHECK(s.serving->chunk_tokens == 64);
    CHECK(s.serving->max_sequences == default_max_sequences);
  }
  SECTION("a kept key the new type does not use is refused at its location in the file") {
    const std::string chunked = t::replace_line(serving, "  scheduler: {type: continuous, max_sequences: 1}",
                                                "  scheduler:\n    type: chunked_prefill\n    chunk_tokens: 64");
    const auto e = t::expect_input_error([&] { t::load(chunked, {"serving.scheduler.type=continuous"}); });
    CHECK(e.key() == "serving.scheduler.chunk_tokens");
    CHECK(e.file() == "test.yaml");
    CHECK(e.line() == t::line_in(chunked, "chunk_tokens: 64"));
    CHECK(t::contains(e.message(), "only used by scheduler type chunked_prefill"));
    // ... and says how to replace the section instead.
    CHECK(t::contains(e.message(), "--set serving.scheduler.type=continuous sets only the type"));
    CHECK(t::contains(e.message(), "--set 'serving.scheduler={type: ..., ...}'"));
  }
}

TEST_CASE("scenario::load_alternatives: an alternative may change a distribution's type", "[scenario][overrides]") {
  const std::string path = std::string(MOESIM_SOURCE_ROOT) + "/scenarios/compare/serving_placement.yaml";
  const auto alts = load_alternatives(path, t::real_catalog(), {}, {"{label: fixedlen, serving: {prompt_length: {type: fixed, value: 400}}}"});
  REQUIRE(!alts.empty());
  CHECK(alts.back().label == "fixedlen");
  CHECK(alts.back().scenario.serving->prompt_tokens.type == "fixed");
  CHECK(alts.back().scenario.serving->prompt_tokens.value == 400);
}

TEST_CASE("scenario::load_string: --set into a list item says to set the whole list", "[scenario][overrides]") {
  try {
    t::load(t::base_yaml(), {"placement[0].share=0.5"});
    FAIL("no error");
  } catch (const InputError& e) {
    CHECK(e.file() == "--set placement[0].share=0.5");
    CHECK(t::contains(e.what(), "cannot reach into a list ('placement[0]')"));
    CHECK(t::contains(e.what(), "--set 'placement=["));
  }
}
