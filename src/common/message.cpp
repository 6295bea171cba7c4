#include "ntp/message.hpp"

#include <nlohmann/json.hpp>

namespace ntp {
namespace {

using json = nlohmann::json;

// Field readers that fail with a message instead of throwing type errors.
struct Reader {
  const json& j;
  std::string& error;

  bool str(const char* key, std::string& out, std::size_t max = 256) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return fail(key, "a string");
    out = it->get<std::string>();
    if (out.size() > max) return fail(key, "a shorter string");
    return true;
  }
  template <class Int>
  bool num(const char* key, Int& out, std::uint64_t max) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_unsigned() || it->get<std::uint64_t>() > max)
      return fail(key, "an unsigned integer in range");
    out = static_cast<Int>(it->get<std::uint64_t>());
    return true;
  }
  // An optional member: absent is fine; present must be valid.
  template <class Int>
  bool opt_num(const char* key, std::optional<Int>& out, std::uint64_t min, std::uint64_t max) {
    auto it = j.find(key);
    if (it == j.end()) return true;
    if (!it->is_number_unsigned() || it->get<std::uint64_t>() < min ||
        it->get<std::uint64_t>() > max)
      return fail(key, "an unsigned integer in range");
    out = static_cast<Int>(it->get<std::uint64_t>());
    return true;
  }
  bool opt_strings(const char* key, std::vector<std::string>& out, std::size_t max_items) {
    auto it = j.find(key);
    if (it == j.end()) return true;
    if (!it->is_array() || it->size() > max_items) return fail(key, "an array of strings");
    for (auto& v : *it) {
      if (!v.is_string() || v.get_ref<const std::string&>().size() > 64)
        return fail(key, "an array of short strings");
      out.push_back(v.get<std::string>());
    }
    return true;
  }
  bool opt_str(const char* key, std::string& out, std::size_t max) {
    return j.find(key) == j.end() || str(key, out, max);
  }
  bool opt_bool(const char* key, bool& out) {
    auto it = j.find(key);
    if (it == j.end()) return true;
    if (!it->is_boolean()) return fail(key, "true or false");
    out = it->get<bool>();
    return true;
  }
  bool fail(const char* key, const char* what) {
    error = std::string(key) + ": expected " + what;
    return false;
  }
};

json to_json(const Message& m) {
  struct Visitor {
    json operator()(const msg::Challenge& x) const {
      return {{"type", "challenge"}, {"nonce", x.nonce}};
    }
    json operator()(const msg::Login& x) const {
      return {{"type", "login"}, {"group", x.group}, {"nonce", x.nonce}, {"proof", x.proof}};
    }
    json operator()(const msg::Welcome& x) const {
      return {{"type", "welcome"},
              {"session", x.session},
              {"proof", x.proof},
              {"heartbeat_timeout_s", x.heartbeat_timeout_s}};
    }
    json operator()(const msg::DataLogin& x) const {
      return {{"type", "data"}, {"session", x.session}, {"seq", x.seq}, {"proof", x.proof}};
    }
    json operator()(const msg::DataOk& x) const {
      return {{"type", "data_ok"}, {"proof", x.proof}};
    }
    json operator()(const msg::Register& x) const {
      json apps = json::array();
      for (auto& a : x.apps) {
        json app = {{"name", a.name}, {"remote_port", a.remote_port}};
        if (a.max_conns) app["max_conns"] = *a.max_conns;
        if (a.bandwidth) app["bandwidth"] = *a.bandwidth;
        if (!a.allow_cidrs.empty()) app["allow_cidrs"] = a.allow_cidrs;
        if (a.type != "tcp") app["type"] = a.type;
        if (a.max_flows) app["max_flows"] = *a.max_flows;
        if (a.udp_idle_s) app["udp_idle_s"] = *a.udp_idle_s;
        if (a.addresses) app["addresses"] = true;
        apps.push_back(std::move(app));
      }
      return {{"type", "register"}, {"apps", std::move(apps)}};
    }
    json operator()(const msg::Registered& x) const {
      json apps = json::array();
      for (auto& a : x.apps) {
        if (a.error.empty())
          apps.push_back({{"name", a.name}, {"remote_port", a.remote_port}});
        else
          apps.push_back({{"name", a.name}, {"error", a.error}});
      }
      return {{"type", "registered"}, {"apps", std::move(apps)}};
    }
    json operator()(const msg::Ping&) const { return {{"type", "ping"}}; }
    json operator()(const msg::Pong&) const { return {{"type", "pong"}}; }
    json operator()(const msg::NeedData& x) const {
      return {{"type", "need_data"}, {"count", x.count}};
    }
    json operator()(const msg::Start& x) const {
      json j = {{"type", "start"}, {"app", x.app}, {"conn", x.conn}};
      if (!x.user.empty()) j["user"] = x.user;
      if (!x.remote.empty()) j["remote"] = x.remote;
      return j;
    }
    json operator()(const msg::Connected&) const { return {{"type", "connected"}}; }
    json operator()(const msg::Error& x) const {
      return {{"type", "error"}, {"message", x.message}};
    }
  };
  return std::visit(Visitor{}, m);
}

// Apps lists are bounded by the frame cap; names by the name rules of the config.
// The entries are pointed to, not copied: copying a json value recurses once per
// nesting level, and a 64 KiB frame nests 32k deep ("name":[[[...]]]), enough to
// overflow the stack of a sanitizer build (nlohmann's parser and destructor
// iterate, so nothing else here recurses on the peer's nesting).
bool decode_apps(const json& j, std::vector<const json*>& out, std::string& error) {
  auto it = j.find("apps");
  if (it == j.end() || !it->is_array()) {
    error = "apps: expected an array";
    return false;
  }
  for (auto& a : *it) {
    if (!a.is_object()) {
      error = "apps: expected objects";
      return false;
    }
    out.push_back(&a);
  }
  return true;
}

}  // namespace

std::string encode(const Message& m) {
  return to_json(m).dump();
}

bool decode(std::string_view body, Message& out, std::string& error) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    error = "expected a JSON object";
    return false;
  }
  Reader r{j, error};
  std::string type;
  if (!r.str("type", type, 32)) return false;

  if (type == "challenge") {
    msg::Challenge m;
    if (!r.str("nonce", m.nonce)) return false;
    out = std::move(m);
  } else if (type == "login") {
    msg::Login m;
    if (!r.str("group", m.group) || !r.str("nonce", m.nonce) || !r.str("proof", m.proof))
      return false;
    out = std::move(m);
  } else if (type == "welcome") {
    msg::Welcome m;
    if (!r.str("session", m.session) || !r.str("proof", m.proof) ||
        !r.num("heartbeat_timeout_s", m.heartbeat_timeout_s, 86400))
      return false;
    out = std::move(m);
  } else if (type == "data") {
    msg::DataLogin m;
    if (!r.str("session", m.session) || !r.num("seq", m.seq, UINT64_MAX) ||
        !r.str("proof", m.proof))
      return false;
    out = std::move(m);
  } else if (type == "data_ok") {
    msg::DataOk m;
    if (!r.str("proof", m.proof)) return false;
    out = std::move(m);
  } else if (type == "register") {
    std::vector<const json*> apps;
    if (!decode_apps(j, apps, error)) return false;
    msg::Register m;
    for (const json* a : apps) {
      Reader ar{*a, error};
      msg::AppRequest req;
      if (!ar.str("name", req.name) || !ar.num("remote_port", req.remote_port, 65535) ||
          !ar.opt_num("max_conns", req.max_conns, 1, 1000000) ||
          !ar.opt_num("bandwidth", req.bandwidth, 1, 1000000000000000ULL) ||
          !ar.opt_strings("allow_cidrs", req.allow_cidrs, 256) ||
          !ar.opt_num("max_flows", req.max_flows, 1, 100000) ||
          !ar.opt_num("udp_idle_s", req.udp_idle_s, 1, 86400) ||
          !ar.opt_bool("addresses", req.addresses))
        return false;
      if (a->contains("type")) {
        if (!ar.str("type", req.type, 16)) return false;
        if (req.type != "tcp" && req.type != "udp") return ar.fail("type", "\"tcp\" or \"udp\"");
      }
      m.apps.push_back(std::move(req));
    }
    out = std::move(m);
  } else if (type == "registered") {
    std::vector<const json*> apps;
    if (!decode_apps(j, apps, error)) return false;
    msg::Registered m;
    for (const json* a : apps) {
      Reader ar{*a, error};
      msg::AppResult res;
      if (!ar.str("name", res.name)) return false;
      if (a->contains("error")) {
        if (!ar.str("error", res.error, 1024)) return false;
      } else if (!ar.num("remote_port", res.remote_port, 65535)) {
        return false;
      }
      m.apps.push_back(std::move(res));
    }
    out = std::move(m);
  } else if (type == "ping") {
    out = msg::Ping{};
  } else if (type == "pong") {
    out = msg::Pong{};
  } else if (type == "need_data") {
    msg::NeedData m;
    if (!r.num("count", m.count, kMaxNeedData)) return false;
    out = m;
  } else if (type == "start") {
    msg::Start m;
    if (!r.str("app", m.app) || !r.num("conn", m.conn, UINT64_MAX) ||
        !r.opt_str("user", m.user, 64) || !r.opt_str("remote", m.remote, 64))
      return false;
    out = std::move(m);
  } else if (type == "connected") {
    out = msg::Connected{};
  } else if (type == "error") {
    msg::Error m;
    if (!r.str("message", m.message, 1024)) return false;
    out = std::move(m);
  } else {
    error = "type: unknown message type \"" + type.substr(0, 32) + "\"";
    return false;
  }
  return true;
}

}  // namespace ntp
