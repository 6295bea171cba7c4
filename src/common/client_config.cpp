// apps.json: parsed and checked into a ClientConfig.
#include <fstream>
#include <map>
#include <sstream>

#include "config_checker.hpp"
#include "ntp/tls.hpp"

namespace ntp {

using namespace config_detail;

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

ClientConfig load_client_config(const std::filesystem::path& file,
                                const std::optional<std::string>& env_tok) {
  return parse_client_config(read_file(file), file.string(), env_tok);
}

}  // namespace ntp
