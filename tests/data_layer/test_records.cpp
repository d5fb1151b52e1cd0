// Dataset reading and bad input: every kind of bad record or file is counted by reason and reported with file and
// line (never a crash), records before a problem are kept, data.strict makes the earliest problem an error, and a
// dataset with no usable record is an error that says why.
#include <gtest/gtest.h>

#include "data_support.hpp"
#include "data/dataset.hpp"
#include "data/records.hpp"
#include "llmft/error.hpp"
#include "test_support.hpp"
#include "util/file.hpp"

using namespace llmft;

using test::gzip;
using test::section;
using test::tiny_tokenizer;
using test::write;

TEST(DataRecords, BadInputIsCountedAndReportedWithFileAndLine) {
  std::string dir = test::temp_dir("bad");
  write(dir, "a.jsonl",
        "{\"instruction\": \"one\", \"output\": \"ok\"}\n"
        "{not json}\n"
        "[1, 2]\n"
        "{\"instruction\": \"no output\"}\n"
        "{\"instruction\": 5, \"output\": \"x\"}\n"
        "{\"instruction\": \"empty\", \"output\": \"   \"}\n"
        "{\"instruction\": \"bad \xff utf8\", \"output\": \"x\"}\n"
        "\n"
        "{\"instruction\": \"two\", \"output\": \"ok\"}\n");
  write(dir, "b.json", "");
  std::string full = "[{\"instruction\": \"three\", \"output\": \"ok\"}, {\"instruction\": \"four\", \"output\": \"ok\"}]";
  write(dir, "c.json.gz", gzip(full).substr(0, gzip(full).size() - 12));  // cut short
  write(dir, "d.json", "[{\"instruction\": \"five\", \"output\": \"ok\"}, {\"instruction\": \"six\"");
  auto tok = tiny_tokenizer();
  data::Dataset ds = data::build_dataset(section(dir), tok, 1, 1);
  const auto& p = ds.report.problems;
  const auto& r = p.by_reason();
  EXPECT_EQ(r.at("malformed JSON"), 2);    // {not json}, and d.json's unclosed array
  EXPECT_EQ(r.at("not an object"), 1);
  EXPECT_EQ(r.at("missing field"), 1);
  EXPECT_EQ(r.at("field not a string"), 1);
  EXPECT_EQ(r.at("empty response"), 1);
  EXPECT_EQ(r.at("invalid UTF-8"), 1);
  EXPECT_EQ(r.at("empty file"), 1);
  EXPECT_EQ(r.at("truncated gzip"), 1);
  // Kept: one, two (a.jsonl), what the gzip stream held before it broke off, five (d.json).
  EXPECT_GE(ds.report.used, 3);
  EXPECT_EQ(ds.train.size() + ds.eval.size(), static_cast<size_t>(ds.report.used));
  auto ex = p.examples();
  ASSERT_FALSE(ex.empty());
  EXPECT_NE(ex[0].find("a.jsonl:2"), std::string::npos) << ex[0];  // the earliest first, with file and line
  bool named_gz = false;
  for (const auto& e : ex) named_gz = named_gz || e.find("c.json.gz") != std::string::npos;
  EXPECT_TRUE(named_gz);
}

TEST(DataRecords, StrictMakesTheEarliestProblemAnError) {
  std::string dir = test::temp_dir("strict");
  write(dir, "a.jsonl", "{\"instruction\": \"x\", \"output\": \"ok\"}\n{\"instruction\": \"y\"}\n");
  write(dir, "b.jsonl", "nope\n");
  auto tok = tiny_tokenizer();
  data::DataOptions d = section(dir);
  d.strict = true;
  try {
    data::build_dataset(d, tok, 1, 2);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kFormat);
    EXPECT_NE(std::string(e.what()).find("a.jsonl:2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("output"), std::string::npos) << e.what();
  }
}

TEST(DataRecords, NoUsableRecordIsAClearError) {
  std::string dir = test::temp_dir("none");
  std::string f = write(dir, "x.jsonl", "{\"instruction\": \"a\"}\n{\"instruction\": \"b\"}\n");
  auto tok = tiny_tokenizer();
  try {
    data::build_dataset(section(f), tok, 1, 1);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no usable records"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("x.jsonl:1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(data::build_dataset(section(dir + "/missing.json"), tok, 1, 1), Error);
}

TEST(DataRecords, ManyFilesAndFoldersAreOneDataset) {
  std::string dir = test::temp_dir("many");
  make_dirs(dir + "/sub");
  write(dir + "/sub", "1.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n");
  write(dir + "/sub", "2.json", "[{\"instruction\": \"c\", \"output\": \"d\"}, {\"instruction\": \"e\", \"output\": \"f\"}]");
  write(dir + "/sub", "3.jsonl.gz", gzip("{\"instruction\": \"g\", \"output\": \"h\"}\n"));
  write(dir + "/sub", "ignored.txt", "not data");
  std::string other = write(dir, "4.jsonl", "{\"instruction\": \"i\", \"output\": \"j\"}\n");
  auto files = data::list_dataset_files(dir + "/sub," + other);
  EXPECT_EQ(files.size(), 4u);
  auto tok = tiny_tokenizer();
  auto ds = data::build_dataset(section(dir + "/sub," + other), tok, 1, 2);
  EXPECT_EQ(ds.report.records, 5);
  EXPECT_EQ(ds.report.used, 5);
  EXPECT_EQ(ds.report.problems.total(), 0);
}
