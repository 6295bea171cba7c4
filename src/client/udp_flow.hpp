// The client's end of one udp flow (one user address of a udp app): a UDP
// socket of its own towards the app, so the app's replies find their way back,
// and the datagrams framed over the flow's data connection (2-byte length, then
// the datagram). With "proxy_protocol": "v2" each datagram to the app carries
// the user's address in front.
#pragma once

#include <string>

#include "ntp/config.hpp"
#include "ntp/live_streams.hpp"
#include "ntp/message.hpp"
#include "ntp/stream.hpp"

namespace ntp {

// `data` has just received a start frame for the udp app `app`: reaches it,
// answers "connected" (or the error), then relays until the server ends the flow.
awaitable<void> serve_udp_flow(const LocalApp& app, Stream data, const msg::Start& start,
                               const std::string& group_context, LiveStreams& streams);

}  // namespace ntp
