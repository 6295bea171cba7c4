// server.json: parsed and checked into a ServerConfig.
#include "config_checker.hpp"

namespace ntp {
namespace {

using namespace config_detail;

bool covered_by(const std::vector<PortRange>& outer, const PortRange& r) {
  for (std::uint32_t p = r.first; p <= r.last; ++p)
    if (!ports_contain(outer, static_cast<std::uint16_t>(p))) return false;
  return true;
}

}  // namespace

ServerConfig parse_server_config(std::string_view text, std::string_view label) {
  auto doc = parse_document(text, label);
  Checker c(label);
  ServerConfig cfg;
  c.only_keys(doc, "",
              {"bind", "token", "proxy_bind_addr", "allow_ports", "groups", "heartbeat_timeout_s",
               "max_handshakes", "max_handshakes_per_source", "max_waiting_users", "max_groups",
               "group_defaults", "tls", "zero_copy", "log_level"});
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
  if (doc.contains("max_handshakes_per_source"))
    if (auto v = c.integer(doc["max_handshakes_per_source"], "max_handshakes_per_source", 1, 10000))
      cfg.max_handshakes_per_source = static_cast<std::uint32_t>(*v);
  if (doc.contains("max_waiting_users"))
    if (auto v = c.integer(doc["max_waiting_users"], "max_waiting_users", 1, 100000))
      cfg.max_waiting_users = static_cast<std::uint32_t>(*v);
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
        else if (auto t = c.nonempty_string(g["token"], path + ".token")) {
          if (auto short_token = token_problem(*t, path + ".token"))
            c.raw(*short_token);
          else
            gc.token = *t;
        }
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

}  // namespace ntp
