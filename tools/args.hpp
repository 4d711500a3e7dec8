// args.hpp — the small flag parser the subcommands share.
//
// Flags are `--name value` or `--name=value`; boolean flags take no value; a flag given
// twice takes its last value. Unknown flags,
// missing values and malformed numbers throw UsageError, which the subcommand turns into
// a usage message and exit status 2.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace flashattn::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// "a,b,,c" → {"a", "b", "", "c"}; "" → {""}: the comma lists every list flag takes.
std::vector<std::string> split(const std::string& s);

class Args {
 public:
  Args(int argc, char** argv);  // argv[0] is the subcommand's name

  bool flag(const std::string& name);  // a boolean flag: present or not
  bool has(const std::string& name) const;
  std::string text(const std::string& name, const std::string& fallback);
  std::int64_t integer(const std::string& name, std::int64_t fallback, std::int64_t min, std::int64_t max);
  double real(const std::string& name, double fallback, double min, double max);
  std::vector<std::int64_t> integers(const std::string& name, std::vector<std::int64_t> fallback,
                                     std::int64_t min, std::int64_t max);
  std::vector<std::string> words(const std::string& name, std::vector<std::string> fallback,
                                 const std::vector<std::string>& allowed);
  // Throws UsageError naming any flag that no call above asked for.
  void finish() const;

 private:
  struct Entry {
    std::string name, value;
    bool has_value = false, used = false;
  };
  Entry* find(const std::string& name);
  const Entry* find(const std::string& name) const;
  std::string value_of(const std::string& name);
  std::vector<Entry> entries_;
};

}  // namespace flashattn::cli
