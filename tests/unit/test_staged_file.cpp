// StagedFile: the policy file changes only on commit, keeps its mode, and a staged file that
// is never committed (an apply whose install failed) leaves the old file and no temporary.
// And what an audit entry says of a policy change: a summary, never the whole text.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "admin.h"

namespace sluice::server {
namespace {

namespace fs = std::filesystem;

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class StagedFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice-staged-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    target_ = dir_ / "policy.yaml";
    std::ofstream(target_) << "old";
    fs::permissions(target_,
                    fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  }
  void TearDown() override { fs::remove_all(dir_); }
  size_t entries() const {
    return static_cast<size_t>(std::distance(fs::directory_iterator(dir_), {}));
  }

  fs::path dir_, target_;
};

TEST_F(StagedFileTest, UncommittedLeavesTheOldFileAndNoTemporary) {
  {
    StagedFile file(target_.string());
    ASSERT_TRUE(file.stage("new").ok());
    EXPECT_EQ(read(target_), "old");  // staged, not yet visible
    EXPECT_EQ(entries(), 2u);         // the target and the staged temporary
  }
  EXPECT_EQ(read(target_), "old");
  EXPECT_EQ(entries(), 1u);
}

TEST_F(StagedFileTest, CommitReplacesTheFileAndKeepsItsMode) {
  StagedFile file(target_.string());
  ASSERT_TRUE(file.stage("new").ok());
  ASSERT_TRUE(file.commit().ok());
  EXPECT_EQ(read(target_), "new");
  EXPECT_EQ(entries(), 1u);
  struct stat st {};
  ASSERT_EQ(::stat(target_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
}

TEST_F(StagedFileTest, AStagingFailureNamesTheDirectory) {
  StagedFile file((dir_ / "missing" / "policy.yaml").string());
  const Status s = file.stage("new");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cannot create a temporary file in"), std::string::npos);
}

// 100,000 added resources are listed as 100 changes, a count of the rest and a digest.
TEST(AuditSummary, ListsAtMostAHundredChangesAndADigest) {
  std::vector<std::string> changes;
  for (int i = 0; i < 100'000; ++i) changes.push_back("resource m" + std::to_string(i) + " added");
  const std::string text(5'000'000, 'x');
  const auto summary = summarize_changes(changes, text);
  ASSERT_EQ(summary.size(), 102u);
  EXPECT_EQ(summary[99], changes[99]);
  EXPECT_EQ(summary[100], "... and 99900 more changes");
  EXPECT_EQ(summary[101].rfind("policy text: 5000000 bytes, xxh3-128 ", 0), 0u) << summary[101];
  EXPECT_EQ(summary[101].size(), std::string("policy text: 5000000 bytes, xxh3-128 ").size() + 32);
  // A different text has a different digest; a short list is kept whole.
  const auto other = summarize_changes({"tier premium: multiplier 5 -> 6"}, text + "y");
  ASSERT_EQ(other.size(), 2u);
  EXPECT_EQ(other[0], "tier premium: multiplier 5 -> 6");
  EXPECT_NE(other[1].substr(other[1].size() - 32), summary[101].substr(summary[101].size() - 32));
}

}  // namespace
}  // namespace sluice::server
