// Unit tests of the dataset readers (shared TSV format, CSV, JSON Lines), their file:line errors,
// and the write_tsv round trip.
#include <gtest/gtest.h>

#include <filesystem>

#include "finepurify/error.hpp"
#include "finepurify/text/dataset.hpp"
#include "fp_test.hpp"

namespace fs = std::filesystem;
using finepurify::Error;
using finepurify::ErrorKind;
using namespace finepurify::text;

namespace {

fs::path write_tmp(const std::string& name, const std::string& content) {
  fs::path d = fp_test::temp_dir("ds");
  fp_test::write_file(d / name, content);
  return d / name;
}

void expect_data_error(const fs::path& p, const ReadOptions& opt, const std::string& where,
                       const std::string& what = "") {
  try {
    read_dataset(p.string(), opt);
    ADD_FAILURE() << "no error for " << p;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::DataInvalid) << e.what();
    const std::string msg = e.what();
    EXPECT_NE(msg.find(p.string() + ":" + where + ":"), std::string::npos) << msg;
    if (!what.empty()) EXPECT_NE(msg.find(what), std::string::npos) << msg;
  }
}

}  // namespace

TEST(Dataset, TsvSingleAndPair) {
  auto p = write_tmp("a.tsv", "label\ttext\n1\t\"quoted\" text \\n stays\n0\tsecond\n");
  Dataset d = read_dataset(p.string());
  ASSERT_EQ(d.examples.size(), 2u);
  EXPECT_EQ(d.examples[0].text_a, "\"quoted\" text \\n stays");  // no quoting / escaping
  EXPECT_EQ(d.examples[0].label, 1);
  EXPECT_FALSE(d.is_pair());
  EXPECT_EQ(d.source, p.string());

  auto q = write_tmp("b.tsv", "label\ttext_a\ttext_b\r\n0\tq?\ta.\r\n1\t\t\r\n");
  Dataset e = read_dataset(q.string());
  ASSERT_EQ(e.examples.size(), 2u);
  EXPECT_TRUE(e.is_pair());
  EXPECT_EQ(e.examples[0].text_a, "q?");
  EXPECT_EQ(*e.examples[0].text_b, "a.");
  EXPECT_EQ(e.examples[1].text_a, "");
  EXPECT_EQ(*e.examples[1].text_b, "");
}

TEST(Dataset, TsvErrorsNameFileAndLine) {
  ReadOptions opt;
  expect_data_error(write_tmp("c.tsv", "label\ttext\n1\tok\n0\ttoo\tmany\n"), opt, "3", "fields");
  expect_data_error(write_tmp("d.tsv", "label\ttext\n1\tok\nx\tbad label\n"), opt, "3", "not an integer");
  expect_data_error(write_tmp("e.tsv", "label\ttext\n1\tok\n0\tbad \xff utf8\n"), opt, "3", "UTF-8");
  expect_data_error(write_tmp("f.tsv", "text\nno label column\n"), opt, "1", "label");
  opt.num_labels = 2;
  expect_data_error(write_tmp("g.tsv", "label\ttext\n1\tok\n2\tout of range\n"), opt, "3", "out of range");
}

TEST(Dataset, LabelOptions) {
  auto p = write_tmp("h.tsv", "label\ttext\npositive\tgood\nnegative\tbad\n");
  ReadOptions opt;
  opt.label2id = {{"negative", 0}, {"positive", 1}};
  Dataset d = read_dataset(p.string(), opt);
  EXPECT_EQ(d.examples[0].label, 1);
  EXPECT_EQ(d.examples[1].label, 0);
  opt.label2id = {{"negative", 0}};
  expect_data_error(p, opt, "2", "label2id");

  auto u = write_tmp("i.tsv", "label\ttext\n\tno label\n1\tlabelled\n");
  ReadOptions unl;
  unl.require_labels = false;
  Dataset e = read_dataset(u.string(), unl);
  EXPECT_EQ(e.examples[0].label, -1);
  EXPECT_EQ(e.examples[1].label, 1);
  expect_data_error(u, ReadOptions{}, "2", "empty label");

  auto n = write_tmp("j.tsv", "text\nonly text\n");
  EXPECT_EQ(read_dataset(n.string(), unl).examples[0].label, -1);
}

TEST(Dataset, Csv) {
  auto p = write_tmp("a.csv",
                     "sentence1,sentence2,label\r\n"
                     "\"he said \"\"hi\"\", ok\",plain,1\r\n"
                     "\"multi\nline\",x,0\n"
                     "a,b,1");
  Dataset d = read_dataset(p.string());
  ASSERT_EQ(d.examples.size(), 3u);
  EXPECT_EQ(d.examples[0].text_a, "he said \"hi\", ok");
  EXPECT_EQ(*d.examples[0].text_b, "plain");
  EXPECT_EQ(d.examples[1].text_a, "multi\nline");
  EXPECT_EQ(d.examples[2].label, 1);

  ReadOptions opt;
  opt.text_column = "body";
  opt.label_column = "y";
  auto q = write_tmp("b.csv", "y,body\n0,hello\n1,\"line\n2\"\n3,x,y\n");
  expect_data_error(q, opt, "5", "fields");  // the record after a two-line field starts on line 5
  expect_data_error(write_tmp("c.csv", "label,text\n1,\"open\n"), ReadOptions{}, "2", "unterminated");
}

TEST(Dataset, JsonLines) {
  auto p = write_tmp("a.jsonl",
                     "{\"text\": \"caf\\u00e9 \\\"x\\\"\", \"label\": 1}\n"
                     "\n"
                     "{\"text\": \"two\", \"label\": \"0\"}\n");
  Dataset d = read_dataset(p.string());
  ASSERT_EQ(d.examples.size(), 2u);
  EXPECT_EQ(d.examples[0].text_a, "caf\xC3\xA9 \"x\"");
  EXPECT_EQ(d.examples[1].label, 0);

  ReadOptions opt;
  opt.text_column = "q";
  opt.text_pair_column = "a";
  opt.label_column = "gold";
  auto q = write_tmp("b.jsonl", "{\"q\": \"why\", \"a\": \"because\", \"gold\": 1}\n");
  Dataset e = read_dataset(q.string(), opt);
  EXPECT_TRUE(e.is_pair());
  EXPECT_EQ(*e.examples[0].text_b, "because");

  expect_data_error(write_tmp("c.jsonl", "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": 1.5}\n"),
                    ReadOptions{}, "2", "label");
  expect_data_error(write_tmp("d.jsonl", "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \n"),
                    ReadOptions{}, "2", "JSON");
  expect_data_error(write_tmp("e.jsonl", "{\"label\": 1}\n"), ReadOptions{}, "1", "text");
}

// fuzz_dataset's finding: a JSON label of 11111111111111113 was read (JSON numbers had no upper
// bound) and written, and its TSV, read back, was refused (the text parser's bound). One bound now
// holds for every format: below util::kMaxLabels (16384, the most labels a config may have).
TEST(Dataset, LabelsHaveOneUpperBoundInEveryFormat) {
  expect_data_error(write_tmp("big.jsonl", "{\"label\": 11111111111111113, \"text\": \"x\"}\n"), ReadOptions{}, "1",
                    "too large");
  expect_data_error(write_tmp("big2.jsonl", "{\"text\": \"a\", \"label\": 0}\n{\"label\": 16384, \"text\": \"x\"}\n"),
                    ReadOptions{}, "2", "too large");
  expect_data_error(write_tmp("big.tsv", "label\ttext\n16384\tx\n"), ReadOptions{}, "2", "too large");
  expect_data_error(write_tmp("huge.tsv", "label\ttext\n99999999999999999999999\tx\n"), ReadOptions{}, "2", "too large");
  expect_data_error(write_tmp("big.csv", "label,text\n0,a\n20000,x\n"), ReadOptions{}, "3", "too large");
  // The largest label id is read in every format and survives the TSV round trip.
  const auto j = read_dataset(write_tmp("top.jsonl", "{\"label\": 16383, \"text\": \"x\"}\n").string());
  ASSERT_EQ(j.examples.at(0).label, 16383);
  const auto out = (fp_test::temp_dir("top") / "out.tsv").string();
  write_tsv(out, j);
  EXPECT_EQ(read_dataset(out).examples.at(0).label, 16383);
}

TEST(Dataset, WriteTsvRoundTrip) {
  Dataset d;
  d.examples.push_back({"\"quoted\", with comma", std::string("b\\side"), 1});
  d.examples.push_back({"", std::string(""), 0});
  d.examples.push_back({"unicode \xE2\x80\xA8 ok", std::string("x"), 2});
  fs::path dir = fp_test::temp_dir("wt");
  const std::string path = (dir / "out.tsv").string();
  write_tsv(path, d);
  Dataset r = read_dataset(path);
  ASSERT_EQ(r.examples.size(), d.examples.size());
  for (std::size_t i = 0; i < d.examples.size(); ++i) {
    EXPECT_EQ(r.examples[i].text_a, d.examples[i].text_a);
    EXPECT_EQ(r.examples[i].text_b, d.examples[i].text_b);
    EXPECT_EQ(r.examples[i].label, d.examples[i].label);
  }
  EXPECT_EQ(fp_test::read_file(path).substr(0, 20), "label\ttext_a\ttext_b\n");
  // Only the target remains (the temporary was renamed).
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);

  // Tabs / newlines inside a text become spaces (the format has no quoting).
  Dataset s;
  s.examples.push_back({"a\tb\nc", std::nullopt, -1});
  write_tsv(path, s);
  ReadOptions unl;
  unl.require_labels = false;
  Dataset rs = read_dataset(path, unl);
  EXPECT_EQ(rs.examples[0].text_a, "a b c");
  EXPECT_EQ(rs.examples[0].label, -1);
}

TEST(Dataset, SharedFilesParse) {
  if (!fp_test::have_shared()) GTEST_SKIP() << "shared/ not available";
  for (const char* name : {"sst2", "qnli", "qqp", "agnews"}) {
    Dataset d = read_dataset((fp_test::shared_dir() / "data" / name / "dev.tsv").string());
    EXPECT_GT(d.examples.size(), 100u) << name;
    fs::path out = fp_test::temp_dir("rt") / "dev.tsv";
    write_tsv(out.string(), d);
    EXPECT_EQ(fp_test::read_file(out), fp_test::read_file(fp_test::shared_dir() / "data" / name / "dev.tsv")) << name;
  }
}
