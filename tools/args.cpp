// args.cpp — see args.hpp.
#include "args.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <sstream>

namespace flashattn::cli {

Args::Args(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || a.size() == 2) throw UsageError("unexpected argument '" + a + "'");
    Entry e;
    const std::size_t eq = a.find('=');
    if (eq != std::string::npos) {
      e.name = a.substr(2, eq - 2);
      e.value = a.substr(eq + 1);
      e.has_value = true;
    } else {
      e.name = a.substr(2);
      if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
        e.value = argv[++i];
        e.has_value = true;
      }
    }
    entries_.push_back(e);
  }
}

// A flag given twice takes its last value (so a command can extend a shared prefix).
Args::Entry* Args::find(const std::string& name) {
  Entry* last = nullptr;
  for (Entry& e : entries_) {
    if (e.name == name) {
      if (last) last->used = true;
      last = &e;
    }
  }
  return last;
}
const Args::Entry* Args::find(const std::string& name) const {
  return const_cast<Args*>(this)->find(name);
}

bool Args::has(const std::string& name) const { return find(name) != nullptr; }

bool Args::flag(const std::string& name) {
  Entry* e = find(name);
  if (!e) return false;
  if (e->has_value) throw UsageError("--" + name + " takes no value (got '" + e->value + "')");
  e->used = true;
  return true;
}

std::string Args::value_of(const std::string& name) {
  Entry* e = find(name);
  if (!e->has_value) throw UsageError("--" + name + " needs a value");
  e->used = true;
  return e->value;
}

std::string Args::text(const std::string& name, const std::string& fallback) {
  return has(name) ? value_of(name) : fallback;
}

namespace {

std::int64_t parse_integer(const std::string& flag, const std::string& s, std::int64_t min, std::int64_t max) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno != 0) {
    throw UsageError("--" + flag + ": '" + s + "' is not a whole number");
  }
  if (v < min || v > max) {
    throw UsageError("--" + flag + ": " + s + " is outside [" + std::to_string(min) + ", " +
                     std::to_string(max) + "]");
  }
  return v;
}

}  // namespace

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> parts;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) parts.push_back(part);
  if (parts.empty()) parts.push_back("");
  return parts;
}

std::int64_t Args::integer(const std::string& name, std::int64_t fallback, std::int64_t min, std::int64_t max) {
  return has(name) ? parse_integer(name, value_of(name), min, max) : fallback;
}

double Args::real(const std::string& name, double fallback, double min, double max) {
  if (!has(name)) return fallback;
  const std::string s = value_of(name);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0') throw UsageError("--" + name + ": '" + s + "' is not a number");
  if (!(v >= min && v <= max)) {
    throw UsageError("--" + name + ": " + s + " is outside [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return v;
}

std::vector<std::int64_t> Args::integers(const std::string& name, std::vector<std::int64_t> fallback,
                                         std::int64_t min, std::int64_t max) {
  if (!has(name)) return fallback;
  std::vector<std::int64_t> out;
  for (const std::string& part : split(value_of(name))) out.push_back(parse_integer(name, part, min, max));
  return out;
}

std::vector<std::string> Args::words(const std::string& name, std::vector<std::string> fallback,
                                     const std::vector<std::string>& allowed) {
  if (!has(name)) return fallback;
  std::vector<std::string> out = split(value_of(name));
  for (const std::string& w : out) {
    if (std::find(allowed.begin(), allowed.end(), w) == allowed.end()) {
      std::string list;
      for (const std::string& a : allowed) list += (list.empty() ? "" : ", ") + a;
      throw UsageError("--" + name + ": unknown value '" + w + "' (expected one of " + list + ")");
    }
  }
  return out;
}

void Args::finish() const {
  for (const Entry& e : entries_) {
    if (!e.used) throw UsageError("unknown flag --" + e.name);
  }
}

}  // namespace flashattn::cli
