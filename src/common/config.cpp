#include "ntp/config.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "ntp/limits.hpp"
#include "ntp/tls.hpp"

namespace ntp {
namespace {

using json = nlohmann::json;

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (auto& l : lines) out += (out.empty() ? "" : "\n") + l;
  return out;
}

// Appends a short rendering of `v`. Bounded in depth as well as length: json's
// own dump() recurses once per nesting level, and a file may nest 30,000 deep.
void show(const json& v, std::string& out, int depth) {
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

std::string shown(const json& v) {
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

json parse_document(std::string_view text, std::string_view label) {
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

std::string read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ConfigError({file.string() + ": cannot read: " + std::strerror(errno)});
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool covered_by(const std::vector<PortRange>& outer, const PortRange& r) {
  for (std::uint32_t p = r.first; p <= r.last; ++p)
    if (!ports_contain(outer, static_cast<std::uint16_t>(p))) return false;
  return true;
}

}  // namespace

ConfigError::ConfigError(std::vector<std::string> problems)
    : std::runtime_error(join_lines(problems)), problems_(std::move(problems)) {}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

std::optional<std::string> env_token() {
  if (const char* t = std::getenv("NTP_TOKEN")) return std::string(t);
  return std::nullopt;
}

ServerConfig parse_server_config(std::string_view text, std::string_view label) {
  auto doc = parse_document(text, label);
  Checker c(label);
  ServerConfig cfg;
  c.only_keys(doc, "",
              {"bind", "token", "proxy_bind_addr", "allow_ports", "groups", "heartbeat_timeout_s",
               "max_handshakes", "max_groups", "group_defaults", "tls", "zero_copy", "log_level"});
  if (doc.contains("bind"))
    if (auto hp = c.host_port(doc["bind"], "bind")) cfg.bind = *hp;
  if (doc.contains("token"))
    if (auto t = c.nonempty_string(doc["token"], "token")) cfg.token = *t;
  if (doc.contains("proxy_bind_addr")) {
    if (auto a = c.string(doc["proxy_bind_addr"], "proxy_bind_addr")) {
      error_code ec;
      asio::ip::make_address(*a, ec);
      if (ec)
        c.problem("proxy_bind_addr", "an IP address such as \"0.0.0.0\" or \"::\"",
                  doc["proxy_bind_addr"]);
      else
        cfg.proxy_bind_addr = *a;
    }
  }
  if (doc.contains("allow_ports"))
    cfg.allow_ports = c.port_ranges(doc["allow_ports"], "allow_ports");
  if (doc.contains("heartbeat_timeout_s"))
    if (auto v = c.integer(doc["heartbeat_timeout_s"], "heartbeat_timeout_s", 1, 3600))
      cfg.heartbeat_timeout_s = static_cast<int>(*v);
  if (doc.contains("max_groups"))
    if (auto v = c.integer(doc["max_groups"], "max_groups", 1, 1000000))
      cfg.max_groups = static_cast<std::uint32_t>(*v);
  if (doc.contains("group_defaults")) {
    const auto& d = doc["group_defaults"];
    if (!d.is_object()) {
      c.problem("group_defaults", "an object with max_apps, max_conns, bandwidth", d);
    } else {
      c.only_keys(d, "group_defaults", {"max_apps", "max_conns", "bandwidth"});
      if (d.contains("max_apps"))
        if (auto v = c.integer(d["max_apps"], "group_defaults.max_apps", 1, 65535))
          cfg.group_defaults.max_apps = static_cast<std::uint32_t>(*v);
      c.limits(d, "group_defaults", cfg.group_defaults);
    }
  }
  if (doc.contains("zero_copy"))
    if (auto v = c.boolean(doc["zero_copy"], "zero_copy")) cfg.zero_copy = *v;
  if (doc.contains("max_handshakes"))
    if (auto v = c.integer(doc["max_handshakes"], "max_handshakes", 1, 10000))
      cfg.max_handshakes = static_cast<std::uint32_t>(*v);
  if (doc.contains("log_level"))
    if (auto l = c.log_level(doc["log_level"], "log_level")) cfg.log_level = *l;
  if (doc.contains("tls")) {
    const auto& t = doc["tls"];
    cfg.tls = c.tls(t, {"cert", "key", "client_ca"}, ServerTls{});
    if (cfg.tls && t.is_object()) {
      if (t.contains("cert")) cfg.tls->cert = c.readable_file(t["cert"], "tls.cert");
      if (t.contains("key")) cfg.tls->key = c.readable_file(t["key"], "tls.key");
      if (t.contains("client_ca"))
        cfg.tls->client_ca = c.readable_file(t["client_ca"], "tls.client_ca");
      if (t.contains("cert") != t.contains("key"))
        c.problem(t.contains("cert") ? "tls.key" : "tls.cert",
                  "\"cert\" and \"key\" together (or neither, for a generated certificate)",
                  "nothing");
    }
  }

  if (doc.contains("groups")) {
    const auto& groups = doc["groups"];
    if (!groups.is_object()) {
      c.problem("groups", "an object of group name to settings", groups);
    } else {
      cfg.groups.emplace();
      for (auto& [name, g] : groups.items()) {
        auto path = "groups." + name;
        if (!valid_name(name))
          c.problem(path, "a group name of 1 to 64 characters from A-Z a-z 0-9 _ . -", json(name));
        if (!g.is_object()) {
          c.problem(path, "an object with \"token\"", g);
          continue;
        }
        c.only_keys(g, path, {"token", "allow_ports", "max_apps", "max_conns", "bandwidth"});
        GroupConfig gc;
        if (!g.contains("token"))
          c.problem(path + ".token", "a token (required for each group)", "nothing");
        else if (auto t = c.nonempty_string(g["token"], path + ".token"))
          gc.token = *t;
        if (g.contains("allow_ports")) {
          const auto& list = g["allow_ports"];
          gc.allow_ports = c.port_ranges(list, path + ".allow_ports");
          // Indexed by the file's entries: a malformed one must not shift the others.
          for (std::size_t i = 0; list.is_array() && i < list.size(); ++i) {
            auto r =
                list[i].is_string() ? parse_port_range(list[i].get<std::string>()) : std::nullopt;
            if (r && !cfg.allow_ports.empty() && !covered_by(cfg.allow_ports, *r))
              c.problem(path + ".allow_ports[" + std::to_string(i) + "]",
                        "ports within the server-wide allow_ports", list[i]);
          }
        }
        if (g.contains("max_apps"))
          if (auto v = c.integer(g["max_apps"], path + ".max_apps", 1, 65535))
            gc.max_apps = static_cast<std::uint32_t>(*v);
        c.limits(g, path, gc);
        (*cfg.groups)[name] = std::move(gc);
      }
    }
  }
  c.finish();
  return cfg;
}

ClientConfig parse_client_config(std::string_view text, std::string_view label,
                                 const std::optional<std::string>& env_tok) {
  auto doc = parse_document(text, label);
  Checker c(label);
  ClientConfig cfg;
  c.only_keys(doc, "",
              {"server", "group", "token", "token_file", "heartbeat_interval_s", "apps", "tls",
               "zero_copy", "log_level"});
  if (doc.contains("server"))
    if (auto hp = c.host_port(doc["server"], "server")) cfg.server = *hp;
  if (!doc.contains("group"))
    c.problem("group", "a group name", "nothing");
  else if (auto g = c.name(doc["group"], "group"))
    cfg.group = *g;
  if (doc.contains("zero_copy"))
    if (auto v = c.boolean(doc["zero_copy"], "zero_copy")) cfg.zero_copy = *v;
  if (doc.contains("heartbeat_interval_s"))
    if (auto v = c.integer(doc["heartbeat_interval_s"], "heartbeat_interval_s", 1, 3600))
      cfg.heartbeat_interval_s = static_cast<int>(*v);
  if (doc.contains("log_level"))
    if (auto l = c.log_level(doc["log_level"], "log_level")) cfg.log_level = *l;
  if (doc.contains("tls")) {
    const auto& t = doc["tls"];
    cfg.tls = c.tls(t, {"ca", "server_fingerprint", "cert", "key"}, ClientTls{});
    if (cfg.tls && t.is_object()) {
      if (t.contains("ca")) cfg.tls->ca = c.readable_file(t["ca"], "tls.ca");
      if (t.contains("server_fingerprint")) {
        const auto& f = t["server_fingerprint"];
        if (f.is_string() && valid_fingerprint(f.get<std::string>()))
          cfg.tls->server_fingerprint = f.get<std::string>();
        else
          c.problem("tls.server_fingerprint",
                    "\"SHA256:\" followed by 64 hex digits, as ntp-server prints it", f);
      }
      if (t.contains("cert")) cfg.tls->cert = c.readable_file(t["cert"], "tls.cert");
      if (t.contains("key")) cfg.tls->key = c.readable_file(t["key"], "tls.key");
      if (t.contains("cert") != t.contains("key"))
        c.problem(t.contains("cert") ? "tls.key" : "tls.cert",
                  "\"cert\" and \"key\" together (a client certificate)", "nothing");
    }
  }

  // Token precedence: NTP_TOKEN, then token_file, then token.
  std::optional<std::string> file_tok, inline_tok;
  if (doc.contains("token_file") && !env_tok) {  // NTP_TOKEN wins: the file is not needed
    if (auto path = c.nonempty_string(doc["token_file"], "token_file")) {
      std::ifstream in(*path, std::ios::binary);
      if (!in) {
        c.problem("token_file", "a readable file holding the token",
                  "\"" + *path + "\" (" + std::strerror(errno) + ")");
      } else {
        std::ostringstream ss;
        ss << in.rdbuf();
        auto t = ss.str();
        while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' '))
          t.pop_back();  // editors add a final newline; it is not part of the token
        if (t.empty())
          c.problem("token_file", "a file holding a non-empty token", "\"" + *path + "\" (empty)");
        else
          file_tok = t;
      }
    }
  }
  if (doc.contains("token"))
    if (auto t = c.nonempty_string(doc["token"], "token")) inline_tok = *t;
  if (env_tok) {
    if (env_tok->empty())
      c.raw("NTP_TOKEN: expected a non-empty token, got an empty value");
    else
      cfg.token = *env_tok;
  } else if (file_tok) {
    cfg.token = *file_tok;
  } else if (inline_tok) {
    cfg.token = *inline_tok;
  } else if (!doc.contains("token") && !doc.contains("token_file")) {
    c.problem("token", "a token (\"token\", \"token_file\" or NTP_TOKEN)", "nothing");
  }

  if (!doc.contains("apps")) {
    c.problem("apps", "a non-empty array of apps", "nothing");
  } else if (!doc["apps"].is_array() || doc["apps"].empty()) {
    c.problem("apps", "a non-empty array of apps", doc["apps"]);
  } else {
    const auto& apps = doc["apps"];
    std::map<std::string, std::size_t> names;
    std::map<std::uint16_t, std::size_t> ports;
    for (std::size_t i = 0; i < apps.size(); ++i) {
      auto path = "apps[" + std::to_string(i) + "]";
      const auto& a = apps[i];
      if (!a.is_object()) {
        c.problem(path, "an object with name, local and remote_port", a);
        continue;
      }
      c.only_keys(
          a, path,
          {"name", "local", "remote_port", "type", "max_conns", "bandwidth", "allow_cidrs"});
      LocalApp app;
      bool ok = true;
      if (!a.contains("name")) {
        c.problem(path + ".name", "an app name", "nothing");
        ok = false;
      } else if (auto n = c.name(a["name"], path + ".name")) {
        app.name = *n;
        if (auto [it, fresh] = names.emplace(*n, i); !fresh) {
          c.problem(path + ".name",
                    "a name unique within the group (apps[" + std::to_string(it->second) +
                        "] has it too)",
                    a["name"]);
          ok = false;
        }
      } else {
        ok = false;
      }
      if (!a.contains("local")) {
        c.problem(path + ".local", "\"host:port\"", "nothing");
        ok = false;
      } else if (auto hp = c.host_port(a["local"], path + ".local")) {
        if (hp->port == 0) {
          c.problem(path + ".local", "\"host:port\" with a port from 1 to 65535", a["local"]);
          ok = false;
        }
        app.local = *hp;
      } else {
        ok = false;
      }
      if (!a.contains("remote_port")) {
        c.problem(path + ".remote_port", "a port from 0 to 65535 (0: the server chooses)",
                  "nothing");
        ok = false;
      } else if (auto p = c.integer(a["remote_port"], path + ".remote_port", 0, 65535)) {
        app.remote_port = static_cast<std::uint16_t>(*p);
        if (*p != 0) {
          if (auto [it, fresh] = ports.emplace(app.remote_port, i); !fresh) {
            c.problem(
                path + ".remote_port",
                "a port no other app uses (apps[" + std::to_string(it->second) + "] has it too)",
                a["remote_port"]);
            ok = false;
          }
        }
      } else {
        ok = false;
      }
      if (a.contains("type")) {
        auto t = c.string(a["type"], path + ".type");
        if (t && *t != "tcp") {
          c.problem(path + ".type", "\"tcp\"", a["type"]);
          ok = false;
        }
      }
      c.limits(a, path, app);
      if (a.contains("allow_cidrs")) {
        const auto& list = a["allow_cidrs"];
        if (!list.is_array() || list.empty()) {
          c.problem(path + ".allow_cidrs", "a non-empty array like [\"192.0.2.0/24\"]", list);
        } else {
          for (std::size_t k = 0; k < list.size(); ++k) {
            auto cidr = list[k].is_string() ? parse_cidr(list[k].get<std::string>()) : std::nullopt;
            if (cidr)
              app.allow_cidrs.push_back(cidr->str());
            else
              c.problem(path + ".allow_cidrs[" + std::to_string(k) + "]",
                        "an address or network like \"192.0.2.0/24\" or \"2001:db8::/32\"",
                        list[k]);
          }
        }
      }
      if (ok) cfg.apps.push_back(std::move(app));
    }
  }
  c.finish();
  return cfg;
}

GroupLimits ServerConfig::limits_for(const std::string& group) const {
  GroupLimits l = group_defaults;
  if (groups) {
    if (auto it = groups->find(group); it != groups->end()) {
      if (it->second.max_apps) l.max_apps = it->second.max_apps;
      if (it->second.max_conns) l.max_conns = it->second.max_conns;
      if (it->second.bandwidth) l.bandwidth = it->second.bandwidth;
    }
  }
  return l;
}

ServerConfig load_server_config(const std::filesystem::path& file) {
  return parse_server_config(read_file(file), file.string());
}

ClientConfig load_client_config(const std::filesystem::path& file,
                                const std::optional<std::string>& env_tok) {
  return parse_client_config(read_file(file), file.string(), env_tok);
}

}  // namespace ntp
