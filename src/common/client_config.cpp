// apps.json: parsed and checked into a ClientConfig.
#include <fstream>
#include <map>
#include <sstream>

#include "config_checker.hpp"
#include "ntp/tls.hpp"

namespace ntp {

using namespace config_detail;

namespace {

// "NAME": the apps[] entries of apps.json, each checked, a port range expanded
// into one app per port; names unique over all, remote ports unique per type.
class AppsChecker {
 public:
  explicit AppsChecker(Checker& c) : c_(c) {}

  std::vector<LocalApp> parse(const json& a, std::size_t i) {
    const auto path = "apps[" + std::to_string(i) + "]";
    if (!a.is_object()) {
      c_.problem(path, "an object with name, local and remote_port", a);
      return {};
    }
    c_.only_keys(a, path,
                 {"name", "local", "remote_port", "type", "max_conns", "bandwidth", "allow_cidrs",
                  "proxy_protocol", "udp_idle_s", "max_flows"});
    LocalApp app;
    bool ok = true;
    if (a.contains("type")) {
      auto t = c_.string(a["type"], path + ".type");
      if (t && (*t == "tcp" || *t == "udp"))
        app.type = *t;
      else if (t) {
        c_.problem(path + ".type", "\"tcp\" or \"udp\"", a["type"]);
        ok = false;
      }
    }
    const bool udp = app.type == "udp";
    std::string name;
    if (!a.contains("name")) {
      c_.problem(path + ".name", "an app name", "nothing");
      ok = false;
    } else if (auto n = c_.name(a["name"], path + ".name")) {
      name = *n;
    } else {
      ok = false;
    }

    // local: "host:port", "host:first-last" or "unix:/path"; remote_port: a
    // port, or "first-last" as long as local's range.
    std::optional<PortRange> local_range, remote_range;
    if (!a.contains("local")) {
      c_.problem(path + ".local", "\"host:port\"", "nothing");
      ok = false;
    } else if (!a["local"].is_string()) {
      c_.problem(path + ".local", "\"host:port\"", a["local"]);
      ok = false;
    } else {
      const auto text = a["local"].get<std::string>();
      if (text.starts_with("unix:")) {
        app.unix_path = text.substr(5);
        if (udp) {
          c_.problem(path + ".local", "\"host:port\" (a udp app cannot live on a Unix socket)",
                     a["local"]);
          ok = false;
        } else if (!app.unix_path.starts_with("/")) {
          c_.problem(path + ".local", "\"unix:\" and an absolute path, like \"unix:/run/app.sock\"",
                     a["local"]);
          ok = false;
        }
      } else if (auto hp = parse_host_port(text)) {
        app.local = *hp;
        if (hp->port == 0) {
          c_.problem(path + ".local", "\"host:port\" with a port from 1 to 65535", a["local"]);
          ok = false;
        }
      } else if (auto ranged = parse_host_range(text)) {
        app.local = ranged->first;
        local_range = ranged->second;
      } else {
        c_.problem(path + ".local", "\"host:port\", \"host:first-last\" or \"unix:/path\"",
                   a["local"]);
        ok = false;
      }
    }
    if (!a.contains("remote_port")) {
      c_.problem(path + ".remote_port", "a port from 0 to 65535 (0: the server chooses)",
                 "nothing");
      ok = false;
    } else if (a["remote_port"].is_string()) {
      const auto text = a["remote_port"].get<std::string>();
      remote_range = text.find('-') == std::string::npos ? std::nullopt : parse_port_range(text);
      if (!remote_range) {
        c_.problem(path + ".remote_port",
                   "a port from 0 to 65535, or a range \"first-last\" of ports from 1 to 65535 "
                   "with first <= last",
                   a["remote_port"]);
        ok = false;
      }
    } else if (auto p = c_.integer(a["remote_port"], path + ".remote_port", 0, 65535)) {
      app.remote_port = static_cast<std::uint16_t>(*p);
    } else {
      ok = false;
    }
    if (ok && (local_range || remote_range)) {
      const auto size = [](const PortRange& r) { return std::size_t{r.last} - r.first + 1; };
      if (remote_range && !local_range) {
        c_.problem(path + ".local",
                   fmt::format("a port range as long as remote_port's ({} ports), like "
                               "\"127.0.0.1:7000-{}\"",
                               size(*remote_range), 7000 + size(*remote_range) - 1),
                   a["local"]);
        ok = false;
      } else if (local_range && !remote_range) {
        c_.problem(path + ".remote_port",
                   fmt::format("a port range as long as local's ({} ports)", size(*local_range)),
                   a["remote_port"]);
        ok = false;
      } else if (size(*local_range) != size(*remote_range)) {
        c_.problem(path + ".local",
                   fmt::format("a port range as long as remote_port's ({} ports), not {}",
                               size(*remote_range), size(*local_range)),
                   a["local"]);
        ok = false;
      } else if (size(*remote_range) > kMaxPortRange) {
        c_.problem(path + ".remote_port", fmt::format("a range of at most {} ports", kMaxPortRange),
                   a["remote_port"]);
        ok = false;
      }
    }

    if (a.contains("proxy_protocol")) {
      auto v = c_.string(a["proxy_protocol"], path + ".proxy_protocol");
      if (v && *v == "v2")
        app.proxy_protocol = ProxyProtocol::v2;
      else if (v && *v == "v1" && !udp)
        app.proxy_protocol = ProxyProtocol::v1;
      else if (v) {
        c_.problem(path + ".proxy_protocol",
                   udp ? "\"v2\" (a udp app's header goes with each datagram, in binary)"
                       : "\"v1\" or \"v2\"",
                   a["proxy_protocol"]);
        ok = false;
      }
    }
    // udp apps count flows, not connections.
    const auto only_for = [&](const char* key, bool allowed, const char* which) {
      if (a.contains(key) && !allowed) {
        c_.problem(path + "." + key, std::string("no such key on a ") + which + " app", a[key]);
        ok = false;
      }
    };
    only_for("max_conns", !udp, "udp (it has max_flows)");
    only_for("udp_idle_s", udp, "tcp");
    only_for("max_flows", udp, "tcp");
    if (udp && a.contains("udp_idle_s"))
      if (auto v = c_.integer(a["udp_idle_s"], path + ".udp_idle_s", 1, 86400))
        app.udp_idle_s = static_cast<std::uint32_t>(*v);
    if (udp && a.contains("max_flows"))
      if (auto v = c_.integer(a["max_flows"], path + ".max_flows", 1, 100000))
        app.max_flows = static_cast<std::uint32_t>(*v);
    c_.limits(a, path, app);
    if (a.contains("allow_cidrs")) {
      const auto& list = a["allow_cidrs"];
      if (!list.is_array() || list.empty()) {
        c_.problem(path + ".allow_cidrs", "a non-empty array like [\"192.0.2.0/24\"]", list);
      } else {
        for (std::size_t k = 0; k < list.size(); ++k) {
          auto cidr = list[k].is_string() ? parse_cidr(list[k].get<std::string>()) : std::nullopt;
          if (cidr)
            app.allow_cidrs.push_back(cidr->str());
          else
            c_.problem(path + ".allow_cidrs[" + std::to_string(k) + "]",
                       "an address or network like \"192.0.2.0/24\" or \"2001:db8::/32\"", list[k]);
        }
      }
    }
    if (!ok || name.empty()) return {};

    // One app, or one per port of the range, named NAME-PORT.
    std::vector<LocalApp> out;
    if (!remote_range) {
      app.name = name;
      out.push_back(app);
    } else {
      for (std::uint32_t k = 0; k <= std::uint32_t{remote_range->last} - remote_range->first; ++k) {
        LocalApp one = app;
        one.remote_port = static_cast<std::uint16_t>(remote_range->first + k);
        one.local.port = static_cast<std::uint16_t>(local_range->first + k);
        one.name = fmt::format("{}-{}", name, one.remote_port);
        if (!valid_name(one.name)) {
          c_.problem(path + ".name",
                     fmt::format("a name that stays within 64 characters with \"-{}\" added",
                                 one.remote_port),
                     a["name"]);
          return {};
        }
        out.push_back(std::move(one));
      }
    }
    // A range names what collides; a single app says "it".
    const auto which = [&](const std::string& what) {
      return remote_range ? what : std::string("it");
    };
    for (auto& one : out) {
      if (auto [it, fresh] = names_.emplace(one.name, i); !fresh) {
        c_.problem(path + ".name",
                   fmt::format("a name unique within the group (apps[{}] has {} too)", it->second,
                               which(in_quotes(one.name))),
                   a["name"]);
        return {};
      }
      if (one.remote_port == 0) continue;
      // A tcp and a udp app may share a port number: they are different sockets.
      if (auto [it, fresh] = ports_.emplace(std::pair{one.type, one.remote_port}, i); !fresh) {
        c_.problem(path + ".remote_port",
                   fmt::format("a port no other {} app uses (apps[{}] has {} too)", one.type,
                               it->second, which(std::to_string(one.remote_port))),
                   a["remote_port"]);
        return {};
      }
    }
    return out;
  }

 private:
  static std::string in_quotes(const std::string& s) { return "\"" + s + "\""; }
  // "host:7000-7009" (or "[v6]:7000-7009").
  static std::optional<std::pair<HostPort, PortRange>> parse_host_range(const std::string& text) {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos || text.find('-', colon) == std::string::npos)
      return std::nullopt;
    auto range = parse_port_range(text.substr(colon + 1));
    auto host = parse_host_port(text.substr(0, colon) + ":1");
    if (!range || !host) return std::nullopt;
    host->port = range->first;
    return std::pair{*host, *range};
  }

  Checker& c_;
  std::map<std::string, std::size_t> names_;
  std::map<std::pair<std::string, std::uint16_t>, std::size_t> ports_;
};

}  // namespace

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
  std::string file_path;
  if (doc.contains("token_file") && !env_tok) {  // NTP_TOKEN wins: the file is not needed
    if (auto path = c.nonempty_string(doc["token_file"], "token_file")) {
      file_path = *path;
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
  cfg.token_inline = doc.contains("token");  // a secret in the file, used or not
  // Only the token in use must be long enough; where it came from is named.
  auto use = [&](const std::string& token, const std::string& where) {
    if (auto short_token = token_problem(token, where))
      c.raw(*short_token);
    else
      cfg.token = token;
  };
  if (env_tok) {
    if (env_tok->empty())
      c.raw("NTP_TOKEN: expected a non-empty token, got an empty value");
    else
      use(*env_tok, "NTP_TOKEN");
  } else if (file_tok) {
    use(*file_tok, "token_file " + file_path);
    cfg.token_file = file_path;
  } else if (inline_tok) {
    use(*inline_tok, "token");
  } else if (!doc.contains("token") && !doc.contains("token_file")) {
    c.problem("token", "a token (\"token\", \"token_file\" or NTP_TOKEN)", "nothing");
  }

  if (!doc.contains("apps")) {
    c.problem("apps", "a non-empty array of apps", "nothing");
  } else if (!doc["apps"].is_array() || doc["apps"].empty()) {
    c.problem("apps", "a non-empty array of apps", doc["apps"]);
  } else {
    AppsChecker apps(c);
    for (std::size_t i = 0; i < doc["apps"].size(); ++i)
      for (auto& app : apps.parse(doc["apps"][i], i)) cfg.apps.push_back(std::move(app));
  }
  c.finish();
  return cfg;
}

std::string LocalApp::where() const {
  return unix_path.empty() ? local.str() : "unix:" + unix_path;
}

ClientConfig load_client_config(const std::filesystem::path& file,
                                const std::optional<std::string>& env_tok) {
  return parse_client_config(read_file(file), file.string(), env_tok);
}

}  // namespace ntp
