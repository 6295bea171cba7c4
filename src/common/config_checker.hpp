// What the two config parsers share: a Checker that walks one JSON document and
// collects every problem with its path, and reading a document. Internal to
// ntp_common (server_config.cpp, client_config.cpp).
#pragma once

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "ntp/config.hpp"
#include "ntp/limits.hpp"

namespace ntp::config_detail {

using json = nlohmann::json;

using json = nlohmann::json;

inline std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (auto& l : lines) out += (out.empty() ? "" : "\n") + l;
  return out;
}

// Appends a short rendering of `v`. Bounded in depth as well as length: json's
// own dump() recurses once per nesting level, and a file may nest 30,000 deep.
inline void show(const json& v, std::string& out, int depth) {
  constexpr std::size_t kEnough = 80;
  if (out.size() > kEnough) return;
  if (!v.is_array() && !v.is_object()) {
    out += v.dump();
    return;
  }
  const bool array = v.is_array();
  if (depth >= 4) {
    out += array ? "[...]" : "{...}";
    return;
  }
  out += array ? '[' : '{';
  bool first = true;
  for (auto it = v.begin(); it != v.end() && out.size() <= kEnough; ++it) {
    if (!first) out += ',';
    first = false;
    if (!array) out += json(it.key()).dump() + ':';
    show(*it, out, depth + 1);
  }
  out += array ? ']' : '}';
}

inline std::string shown(const json& v) {
  std::string s;
  show(v, s, 0);
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

// Walks one document, collecting every problem with its JSON path.
class Checker {
 public:
  explicit Checker(std::string_view label) : label_(label) {}

  void problem(const std::string& path, const std::string& expected, const std::string& got) {
    problems_.push_back(label_ + ": " + path + ": expected " + expected + ", got " + got);
  }
  void problem(const std::string& path, const std::string& expected, const char* got) {
    problem(path, expected, std::string(got));
  }
  void problem(const std::string& path, const std::string& expected, const json& got) {
    problem(path, expected, shown(got));
  }
  void raw(const std::string& text) { problems_.push_back(label_ + ": " + text); }

  // Unknown keys are errors: a typo must not silently fall back to a default.
  void only_keys(const json& obj, const std::string& path, std::set<std::string> known) {
    for (auto& [k, v] : obj.items()) {
      if (!known.count(k)) {
        std::string list;
        for (auto& n : known) list += (list.empty() ? "" : ", ") + n;
        problem(path.empty() ? k : path + "." + k, "one of the keys " + list, "an unknown key");
      }
    }
  }

  std::optional<std::string> string(const json& v, const std::string& path) {
    if (!v.is_string()) {
      problem(path, "a string", v);
      return std::nullopt;
    }
    return v.get<std::string>();
  }

  std::optional<std::string> nonempty_string(const json& v, const std::string& path) {
    auto s = string(v, path);
    if (s && s->empty()) {
      problem(path, "a non-empty string", v);
      return std::nullopt;
    }
    return s;
  }

  std::optional<std::int64_t> integer(const json& v, const std::string& path, std::int64_t lo,
                                      std::int64_t hi) {
    if (!v.is_number_integer() || v.get<std::int64_t>() < lo || v.get<std::int64_t>() > hi) {
      problem(path, fmt::format("an integer from {} to {}", lo, hi), v);
      return std::nullopt;
    }
    return v.get<std::int64_t>();
  }

  std::optional<HostPort> host_port(const json& v, const std::string& path) {
    auto s = string(v, path);
    if (!s) return std::nullopt;
    auto hp = parse_host_port(*s);
    if (!hp) problem(path, "\"host:port\"", v);
    return hp;
  }

  std::optional<std::string> name(const json& v, const std::string& path) {
    auto s = string(v, path);
    if (s && !valid_name(*s)) {
      problem(path, "a name of 1 to 64 characters from A-Z a-z 0-9 _ . -", v);
      return std::nullopt;
    }
    return s;
  }

  std::vector<PortRange> port_ranges(const json& v, const std::string& path) {
    std::vector<PortRange> out;
    if (!v.is_array()) {
      problem(path, "an array of strings like \"6022\" or \"6000-6999\"", v);
      return out;
    }
    for (std::size_t i = 0; i < v.size(); ++i) {
      auto p = path + "[" + std::to_string(i) + "]";
      auto r = v[i].is_string() ? parse_port_range(v[i].get<std::string>()) : std::nullopt;
      if (r)
        out.push_back(*r);
      else
        problem(p, "a port \"6022\" or a range \"6000-6999\" within 1-65535", v[i]);
    }
    return out;
  }

  std::optional<bool> boolean(const json& v, const std::string& path) {
    if (v.is_boolean()) return v.get<bool>();
    problem(path, "true or false", v);
    return std::nullopt;
  }

  std::optional<LogLevel> log_level(const json& v, const std::string& path) {
    auto s = string(v, path);
    if (!s) return std::nullopt;
    auto l = parse_log_level(*s);
    if (!l) problem(path, "one of trace, debug, info, warn, error, critical, off", v);
    return l;
  }

  std::optional<std::uint64_t> rate(const json& v, const std::string& path) {
    auto r = v.is_string() ? parse_rate(v.get<std::string>()) : std::nullopt;
    if (!r)
      problem(path, "a rate like \"10MiB/s\" (B, KB, KiB, MB, MiB, GB, GiB, Mbit, Gbit per second)",
              v);
    return r;
  }

  // The limit keys shared by groups.NAME, group_defaults and apps[] (max_apps
  // only for groups).
  template <class T>
  void limits(const json& obj, const std::string& path, T& out) {
    if (obj.contains("max_conns"))
      if (auto v = integer(obj["max_conns"], path + ".max_conns", 1, 1000000))
        out.max_conns = static_cast<std::uint32_t>(*v);
    if (obj.contains("bandwidth")) out.bandwidth = rate(obj["bandwidth"], path + ".bandwidth");
  }

  // A path to a file this process can read (checked now, so --check finds it).
  std::string readable_file(const json& v, const std::string& path) {
    auto s = nonempty_string(v, path);
    if (!s) return {};
    std::error_code ec;
    const int err = ::access(s->c_str(), R_OK) != 0         ? errno
                    : std::filesystem::is_directory(*s, ec) ? EISDIR
                                                            : 0;
    if (err) {
      problem(path, "a readable file", "\"" + *s + "\" (" + std::strerror(err) + ")");
      return {};
    }
    return *s;
  }

  // "tls": absent/true (defaults), false (off) or an object with `keys` (file paths,
  // except server_fingerprint). Returns nullopt for false.
  template <class T>
  std::optional<T> tls(const json& v, std::set<std::string> keys, T defaults) {
    if (v.is_boolean()) return v.get<bool>() ? std::optional<T>(defaults) : std::nullopt;
    if (!v.is_object()) {
      std::string list;
      for (auto& k : keys) list += (list.empty() ? "" : ", ") + k;
      problem("tls", "false, true or an object with " + list, v);
      return defaults;
    }
    only_keys(v, "tls", keys);
    return defaults;
  }

  void finish() const {
    if (!problems_.empty()) throw ConfigError(problems_);
  }

 private:
  std::string label_;
  std::vector<std::string> problems_;
};

inline json parse_document(std::string_view text, std::string_view label) {
  try {
    auto j = json::parse(text);
    if (!j.is_object())
      throw ConfigError(
          {std::string(label) + ": (top level): expected a JSON object, got " + shown(j)});
    return j;
  } catch (const json::exception& e) {
    // Syntax errors (parse_error) carry "at line L, column C"; a number too large
    // for a double is an out_of_range ("number overflow parsing '1e999'").
    std::string what = e.what();
    auto pos = what.find("parse error");
    if (pos == std::string::npos)
      pos = what.find("] ") == std::string::npos ? 0 : what.find("] ") + 2;
    throw ConfigError({std::string(label) + ": invalid JSON: " + what.substr(pos)});
  }
}

inline std::string read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ConfigError({file.string() + ": cannot read: " + std::strerror(errno)});
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace ntp::config_detail
