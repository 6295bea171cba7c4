#include "handshake_table.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace ntp {

HandshakeTable::Entry::Entry(HandshakeTable& table, std::string source, tcp::socket& s)
    : table_(&table), source_(std::move(source)), socket_(&s) {
  table_->sources_[source_].entries.push_back(this);
  ++table_->size_;
}

HandshakeTable::Entry::~Entry() {
  if (listed_) table_->leave(*this);
}

void HandshakeTable::leave(Entry& e) {
  e.listed_ = false;
  auto it = sources_.find(e.source_);
  it->second.entries.remove(&e);
  --size_;
  if (it->second.entries.empty()) sources_.erase(it);
}

void HandshakeTable::close(Entry& e) {
  error_code ignored;  // the peer may have closed first
  e.socket_->close(ignored);
  leave(e);
}

std::size_t HandshakeTable::of(const std::string& source) const {
  auto it = sources_.find(source);
  return it == sources_.end() ? 0 : it->second.entries.size();
}

std::vector<HandshakeTable::Closed> HandshakeTable::make_room(const std::string& source,
                                                              steady_clock::time_point now) {
  std::vector<Closed> closed;
  if (auto it = sources_.find(source);
      it != sources_.end() && it->second.entries.size() >= per_source_) {
    auto& oldest = *it->second.entries.front();
    if (now - oldest.since_ >= kStalled) {
      close(oldest);
      closed.push_back(
          {source, fmt::format("max_handshakes_per_source ({}) reached", per_source_)});
    }
  }
  if (size_ >= max_total_) {
    auto largest = std::max_element(sources_.begin(), sources_.end(), [](auto& a, auto& b) {
      return a.second.entries.size() < b.second.entries.size();
    });
    const auto from = largest->first;
    close(*largest->second.entries.front());
    closed.push_back(
        {from, fmt::format("max_handshakes ({}) reached, and it holds the most", max_total_)});
  }
  return closed;
}

void HandshakeTable::close_all() {
  for (auto& [source, s] : sources_)
    for (auto* e : s.entries) {
      error_code ignored;
      e->socket_->close(ignored);
    }
}

}  // namespace ntp
