// The RESP2 codec: requests (multibulk and inline), replies of every type, partial frames,
// pipelines, caps and malformed input.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sluice/resp.h"

namespace sluice::resp {
namespace {

using ::testing::Test;

struct Parsed {
  ParseStatus status;
  size_t consumed;
  std::vector<std::string> args;
  std::string error;
};

Parsed parse(std::string text, const Limits& limits = {}) {
  std::vector<std::string_view> argv;
  ParseResult r = parse_command(std::span<char>(text.data(), text.size()), limits, argv);
  Parsed p{r.status, r.consumed, {}, std::string(r.error)};
  for (auto a : argv) p.args.emplace_back(a);
  return p;
}

using Args = std::vector<std::string>;

// A multibulk request is split into its bulk strings, binary-safe.
TEST(RespCommand, ParsesMultibulk) {
  auto p = parse("*3\r\n$8\r\nSL.CHECK\r\n$7\r\npredict\r\n$5\r\nal\r\ne\r\n");
  ASSERT_EQ(p.status, ParseStatus::kComplete);
  EXPECT_EQ(p.consumed, 42u);
  EXPECT_EQ(p.args, (Args{"SL.CHECK", "predict", "al\r\ne"}));
}

// Empty bulk strings and binary bytes (NUL) survive.
TEST(RespCommand, ParsesEmptyAndBinaryBulk) {
  std::string frame = "*2\r\n$0\r\n\r\n$3\r\na";
  frame += '\0';
  frame += "b\r\n";
  auto p = parse(frame);
  ASSERT_EQ(p.status, ParseStatus::kComplete);
  EXPECT_EQ(p.consumed, frame.size());
  ASSERT_EQ(p.args.size(), 2u);
  EXPECT_EQ(p.args[0], "");
  EXPECT_EQ(p.args[1], std::string("a\0b", 3));
}

// "*0" and "*-1" are complete frames with nothing to run, as in Redis.
TEST(RespCommand, EmptyArraysAreSkipped) {
  auto p = parse("*0\r\n*1\r\n$4\r\nPING\r\n");
  EXPECT_EQ(p.status, ParseStatus::kComplete);
  EXPECT_EQ(p.consumed, 4u);
  EXPECT_TRUE(p.args.empty());
  p = parse("*-1\r\n");
  EXPECT_EQ(p.status, ParseStatus::kComplete);
  EXPECT_EQ(p.consumed, 5u);
}

// Only the first frame of a pipeline is parsed; consumed tells where the next begins.
TEST(RespCommand, PipelinedFramesOneAtATime) {
  std::string pipeline = "*1\r\n$4\r\nPING\r\nPING hello\r\n*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n";
  std::vector<Args> seen;
  size_t pos = 0;
  std::vector<std::string_view> argv;
  while (pos < pipeline.size()) {
    ParseResult r = parse_command(std::span<char>(pipeline.data() + pos, pipeline.size() - pos),
                                  Limits{}, argv);
    ASSERT_EQ(r.status, ParseStatus::kComplete);
    seen.emplace_back(argv.begin(), argv.end());
    pos += r.consumed;
  }
  EXPECT_EQ(seen, (std::vector<Args>{{"PING"}, {"PING", "hello"}, {"ECHO", "x"}}));
}

// Every prefix of a frame is incomplete, never an error, and the whole frame parses.
TEST(RespCommand, PartialFramesAtEverySplitPoint) {
  const std::vector<std::string> frames = {
      "*4\r\n$10\r\nSL.ACQUIRE\r\n$7\r\npredict\r\n$0\r\n\r\n$12\r\nalice\r\nsmith\r\n",
      "SL.CHECK predict \"al ice\" TIER 'pro'\r\n",
      "PING\n",
  };
  for (const std::string& frame : frames) {
    for (size_t cut = 0; cut < frame.size(); ++cut) {
      auto p = parse(frame.substr(0, cut));
      EXPECT_EQ(p.status, ParseStatus::kIncomplete) << "cut at " << cut << " of " << frame;
      EXPECT_TRUE(p.args.empty());
    }
    auto whole = parse(frame);
    EXPECT_EQ(whole.status, ParseStatus::kComplete) << frame;
    EXPECT_EQ(whole.consumed, frame.size());
  }
}

// Inline commands: whitespace separated, CRLF or LF, quotes and escapes as in redis-cli.
TEST(RespCommand, ParsesInlineCommands) {
  EXPECT_EQ(parse("SL.CHECK predict alice\r\n").args, (Args{"SL.CHECK", "predict", "alice"}));
  EXPECT_EQ(parse("  PING   \n").args, (Args{"PING"}));
  EXPECT_EQ(parse("SET \"a b\\x41\\n\" 'it\\'s' \"\"\r\n").args,
            (Args{"SET", "a bA\n", "it's", ""}));
  EXPECT_EQ(parse("ECHO \"tab\\there\"\r\n").args, (Args{"ECHO", "tab\there"}));
}

// A blank inline line is complete and empty (skipped by the server).
TEST(RespCommand, BlankInlineLineIsEmpty) {
  auto p = parse("\r\nPING\r\n");
  EXPECT_EQ(p.status, ParseStatus::kComplete);
  EXPECT_EQ(p.consumed, 2u);
  EXPECT_TRUE(p.args.empty());
}

struct BadFrame {
  const char* frame;
  const char* error_part;
};

class RespMalformed : public ::testing::TestWithParam<BadFrame> {};

// Broken frames are errors (the connection cannot be resynchronised), never crashes.
TEST_P(RespMalformed, IsAnError) {
  auto p = parse(GetParam().frame);
  EXPECT_EQ(p.status, ParseStatus::kError);
  EXPECT_NE(p.error.find(GetParam().error_part), std::string::npos) << p.error;
  EXPECT_TRUE(p.args.empty());
}

INSTANTIATE_TEST_SUITE_P(Frames, RespMalformed,
                         ::testing::Values(BadFrame{"*x\r\n", "invalid multibulk length"},
                                           BadFrame{"*\r\n", "invalid multibulk length"},
                                           BadFrame{"*1\r\n:5\r\n", "expected '$'"},
                                           BadFrame{"*1\r\n$-2\r\n", "invalid bulk length"},
                                           BadFrame{"*1\r\n$abc\r\n", "invalid bulk length"},
                                           BadFrame{"*1\r\n$3\r\nabcde\r\n",
                                                    "not terminated by CRLF"},
                                           BadFrame{"*1\rx", "expected CRLF"},
                                           BadFrame{"ECHO \"open\r\n", "unbalanced quotes"},
                                           BadFrame{"ECHO \"a\"b\r\n", "unbalanced quotes"},
                                           BadFrame{"ECHO 'a\r\n", "unbalanced quotes"}));

// Caps: argument count, bulk length, frame size, inline line length.
TEST(RespCommand, EnforcesLimits) {
  Limits small;
  small.max_args = 2;
  small.max_bulk_bytes = 4;
  small.max_frame_bytes = 64;
  small.max_inline_bytes = 16;
  EXPECT_EQ(parse("*3\r\n", small).status, ParseStatus::kError);
  EXPECT_EQ(parse("A B C\r\n", small).status, ParseStatus::kError);
  EXPECT_EQ(parse("*1\r\n$5\r\n", small).status, ParseStatus::kError);
  EXPECT_EQ(parse("*1\r\n$4\r\nabcd\r\n", small).status, ParseStatus::kComplete);
  EXPECT_EQ(parse(std::string(17, 'a'), small).status, ParseStatus::kError);
  EXPECT_EQ(parse(std::string(15, 'a'), small).status, ParseStatus::kIncomplete);
  // A frame whose declared size passes the frame cap fails before it is buffered.
  small.max_bulk_bytes = 1000;
  EXPECT_EQ(parse("*1\r\n$100\r\n", small).status, ParseStatus::kError);
  // An incomplete frame that already fills the cap fails.
  Limits frame;
  frame.max_frame_bytes = 32;
  EXPECT_EQ(parse("*2\r\n$2\r\nab\r\n$100\r\n" + std::string(20, 'x'), frame).status,
            ParseStatus::kError);
  // A header line without CRLF is bounded too.
  EXPECT_EQ(parse("*" + std::string(20, '1'), small).status, ParseStatus::kError);
}

// The writer produces exactly Redis's encoding for every type.
TEST(RespWriter, EncodesEveryType) {
  std::string out;
  Writer w(out);
  w.simple("OK");
  w.error("WRONGARGS", "bad\r\nthing");
  w.integer(-42);
  w.bulk("hi");
  w.bulk("");
  w.null_bulk();
  w.array(2);
  w.integer(0);
  w.null_array();
  EXPECT_EQ(out,
            "+OK\r\n-WRONGARGS bad  thing\r\n:-42\r\n$2\r\nhi\r\n$0\r\n\r\n$-1\r\n*2\r\n:0\r\n"
            "*-1\r\n");
}

// A command encodes as an array of bulk strings that parse_command reads back.
TEST(RespWriter, CommandRoundTrip) {
  std::string out = encode_command({"SL.CHECK", "predict", "a b\r\n"});
  EXPECT_EQ(out, "*3\r\n$8\r\nSL.CHECK\r\n$7\r\npredict\r\n$5\r\na b\r\n\r\n");
  auto p = parse(out);
  EXPECT_EQ(p.args, (Args{"SL.CHECK", "predict", "a b\r\n"}));
}

// Replies of every type parse into values, including nested and nil ones.
TEST(RespValue, ParsesEveryType) {
  const std::string reply =
      "*7\r\n:1\r\n+OK\r\n-NOLEASE unknown lease\r\n$5\r\nhello\r\n$-1\r\n*-1\r\n*2\r\n:-1\r\n"
      "$0\r\n\r\n";
  Value v;
  ParseResult r = parse_value(reply, Limits{}, v);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.consumed, reply.size());
  ASSERT_EQ(v.type, Value::Type::kArray);
  ASSERT_EQ(v.elements.size(), 7u);
  EXPECT_EQ(v.elements[0].integer, 1);
  EXPECT_EQ(v.elements[1].str, "OK");
  EXPECT_TRUE(v.elements[2].is_error());
  EXPECT_EQ(v.elements[2].error_code(), "NOLEASE");
  EXPECT_EQ(v.elements[3].str, "hello");
  EXPECT_TRUE(v.elements[4].is_null());
  EXPECT_TRUE(v.elements[5].is_null());
  EXPECT_EQ(v.elements[6].elements[0].integer, -1);
  EXPECT_EQ(v.elements[6].elements[1].type, Value::Type::kBulk);
  EXPECT_EQ(v.to_string(),
            "1) (integer) 1\n2) OK\n3) (error) NOLEASE unknown lease\n4) \"hello\"\n5) (nil)\n"
            "6) (nil)\n7) 1) (integer) -1\n   2) \"\"");
}

// Every prefix of a reply is incomplete.
TEST(RespValue, PartialRepliesAtEverySplitPoint) {
  const std::string reply = "*6\r\n:1\r\n:10\r\n:9\r\n:60000\r\n:0\r\n$7\r\ndefault\r\n";
  for (size_t cut = 0; cut < reply.size(); ++cut) {
    Value v;
    EXPECT_EQ(parse_value(reply.substr(0, cut), Limits{}, v).status, ParseStatus::kIncomplete)
        << cut;
  }
}

// Malformed replies and too-deep nesting are errors.
TEST(RespValue, RejectsMalformed) {
  Value v;
  EXPECT_EQ(parse_value("?x\r\n", Limits{}, v).status, ParseStatus::kError);
  EXPECT_EQ(parse_value(":12a\r\n", Limits{}, v).status, ParseStatus::kError);
  EXPECT_EQ(parse_value("$-5\r\n", Limits{}, v).status, ParseStatus::kError);
  EXPECT_EQ(parse_value("$1\r\nab\r\n", Limits{}, v).status, ParseStatus::kError);
  Limits shallow;
  shallow.max_depth = 2;
  EXPECT_EQ(parse_value("*1\r\n*1\r\n*1\r\n:1\r\n", shallow, v).status, ParseStatus::kError);
  EXPECT_EQ(parse_value("*1\r\n*1\r\n:1\r\n", shallow, v).status, ParseStatus::kComplete);
}

}  // namespace
}  // namespace sluice::resp
