// Markdown rendering of a purify report: the headline facts, the evaluated points and the
// trigger-candidate extensions when they were used.
#include <gtest/gtest.h>

#include "finepurify/report/purify_report.hpp"
#include "finepurify/report/run_report.hpp"

using nlohmann::json;

namespace {
json minimal_report() {
  json diag = {{"indicator", "fisher-ratio"}, {"epsilon", 1e-12}, {"epsilon_scale", 1e-8}, {"fisher_at", "ft"},
               {"fisher_examples", 8}, {"aligned_tensors", 1}, {"aligned_dimensions", 10},
               {"top_tokens", {{{"rank", 1}, {"id", 7}, {"token", "c|f"}, {"share", 0.5}, {"drift_l2", 0.1},
                                {"fisher_row_sum", 0.0}}}},
               {"per_layer", json::array()}, {"per_tensor", json::array()},
               {"distribution_log10", {{"p50", -3.0}, {"sampled", 10}}}, {"unaligned", json::array()}};
  return {{"chosen_rho", 0.01}, {"max_acc_drop_points", 3.0},
          {"selection", {{"reset_dimensions", 1}, {"per_layer", {{"embeddings", 1}}}, {"per_tensor", {{"w", 1}}}}},
          {"suspect", {{"clean_dev_accuracy", 0.885}, {"asr", 1.0}, {"flip_rate", 0.02}, {"test_accuracy", 0.90}}},
          {"purified", {{"clean_dev_accuracy", 0.855}, {"asr", 0.285}, {"flip_rate", 0.0}, {"test_accuracy", 0.91}}},
          {"clean_train_examples", 8}, {"clean_dev_examples", 2}, {"scope", "global"},
          {"fine_tuning", {{"epochs", 3}, {"lr", 5e-5}, {"batch_size", 16}}},
          {"evaluated", {{{"rho", 0.01}, {"reset_dimensions", 1}, {"clean_dev_accuracy", 0.855}, {"asr", 0.285},
                          {"flip_rate", 0.0}, {"test_accuracy", 0.91}, {"within_budget", true}, {"seconds", 4.0}}}},
          {"unlearning", nullptr}, {"neutralized", nullptr}, {"diagnosis", diag}};
}
}  // namespace

TEST(PurifyReport, HeadlineAndPoints) {
  auto md = finepurify::report::purify_markdown(minimal_report());
  for (auto s : {"rho = **0.01**", "chosen by the `largest` rule under the clean-dev accuracy budget of 3 points",
                 "suspect 88.50% -> purified 85.50%", "suspect 100.00% -> purified 28.50%",
                 "| 0.01 | 1 | 85.50% | yes | 28.50% | 0.00% | 91.00% | 4 |", "suspect 2.00% -> purified 0.00%",
                 "suspect 90.00% -> purified 91.00%", "`c\\|f`"})
    EXPECT_NE(md.find(s), std::string::npos) << s << "\n" << md;
  EXPECT_EQ(md.find("--neutralize-tokens"), std::string::npos);
  EXPECT_EQ(md.find("--unlearn-tokens"), std::string::npos);
}

TEST(PurifyReport, ExtensionsAreStated) {
  auto r = minimal_report();
  r["neutralized"] = {{"tokens", {"cf", "##enia"}}, {"replacement", "[UNK] (pre-trained row)"}};
  r["unlearning"] = {{"tokens", {"cf"}}, {"max_insertions", 3}, {"train_examples", 16}};
  auto md = finepurify::report::purify_markdown(r);
  EXPECT_NE(md.find("the embedding rows of `cf`, `##enia` set to the [UNK] (pre-trained row)"), std::string::npos) << md;
  EXPECT_NE(md.find("fine-tuning on 16 examples, the clean ones plus copies with 1-3 of `cf` inserted"), std::string::npos)
      << md;
}

TEST(RunReport, TrainEvalAndTriggerJson) {
  finepurify::train::TrainResult t;
  t.epochs = {{1, 0.5, 0.8, 2.0}, {2, 0.3, 0.9, 2.0}};
  t.steps = 12;
  t.best_epoch = 2;
  auto tj = finepurify::report::train_json(t);
  EXPECT_EQ(tj["epochs"].size(), 2u);
  EXPECT_EQ(tj["steps"], 12);
  EXPECT_EQ(tj["epochs"][1]["dev_accuracy"], 0.9);
  finepurify::train::EvalResult e;
  e.n = 3;
  e.accuracy = 2.0 / 3;
  e.precision = {1, 0.5};
  e.recall = {0.5, 1};
  e.f1 = {2.0 / 3, 2.0 / 3};
  e.confusion = {{1, 1}, {0, 1}};
  auto ej = finepurify::report::eval_json(e, {"neg", "pos"});
  EXPECT_EQ(ej["per_class"][1]["label"], "pos");
  EXPECT_EQ(ej["confusion"][0][1], 1);
  EXPECT_EQ(finepurify::report::eval_json(e)["per_class"][0]["label"], "0");  // no names: the ids
  auto l = finepurify::attack::lwp_trigger({"cf", "mn"}, 2);
  auto lj = finepurify::report::trigger_json(l);
  EXPECT_EQ(lj["kind"], "lwp");
  EXPECT_EQ(lj["combination"], 2);
  EXPECT_EQ(finepurify::report::trigger_json(finepurify::attack::badword_trigger({"cf"}))["insertions"], json({1, 3}));
}
