//! Network filters: data callbacks, buffering, closing, and the connection lifecycle.
//!
//! The `probe` mode of the `tcp` guest logs every hostcall with its status; each expected
//! line and byte string here is what the same module produced in Envoy 1.40 (V8) in front of
//! tcp_proxy, for the same bytes from the client and the upstream.

use eventseal_harness::{Error, PeerType, Plugin, PluginConfig, StreamState, TcpSide, TcpStream};

use crate::tcp_module;

/// The `tcp` guest in `probe` mode and a connection through it.
fn probe() -> (Plugin, TcpStream) {
    let plugin = tcp_module().plugin(PluginConfig::new().configuration("probe")).unwrap();
    let connection = plugin.tcp_stream().unwrap();
    (plugin, connection)
}

/// Panics, showing the log, unless the guest logged `line` exactly.
#[track_caller]
fn assert_logged(plugin: &Plugin, line: &str) {
    let logs = plugin.logs();
    assert!(
        logs.iter().any(|l| l.message == line),
        "not logged: {line}\nlogs: {:#?}",
        logs.iter().map(|l| &l.message).collect::<Vec<_>>()
    );
}

/// How many times a data callback of `side` ("downstream", "upstream") ran.
fn callbacks(plugin: &Plugin, side: &str) -> usize {
    let prefix = format!("{side} size=");
    plugin.logs().iter().filter(|l| l.message.starts_with(&prefix)).count()
}

#[test]
fn data_is_buffered_until_a_line_and_rewritten_both_ways() {
    let plugin = tcp_module().plugin(PluginConfig::new()).unwrap();
    let mut connection = plugin.tcp_stream().unwrap();
    assert!(plugin.logged(&format!("connection {} opened", connection.id())));
    assert_eq!(connection.send_downstream_data("hel", false).unwrap(), StreamState::Paused);
    assert!(connection.upstream_received().is_empty());
    assert_eq!(connection.send_downstream_data("lo\n", false).unwrap(), StreamState::Continued);
    assert!(
        plugin.logged("downstream data size=6 end=false"),
        "the second callback sees the buffered bytes too"
    );
    assert_eq!(connection.upstream_received(), b"HELLO\n");
    connection.send_upstream_data("hi", true).unwrap();
    assert_eq!(connection.client_received(), b"> hi");
    assert!(connection.client_end_received());
    assert!(
        plugin.logged("upstream closed by Unknown"),
        "upstream end of stream reports the close"
    );
    let id = connection.id();
    connection.close(PeerType::Remote).unwrap();
    assert!(plugin.logged("downstream closed by Remote"));
    assert!(plugin.logged(&format!("connection {id} logged")));
}

#[test]
fn the_filter_can_close_the_connection() {
    let plugin = tcp_module().plugin(PluginConfig::new()).unwrap();
    let mut connection = plugin.tcp_stream().unwrap();
    let id = connection.id();
    assert_eq!(connection.send_downstream_data("QUIT\n", false).unwrap(), StreamState::Reset);
    assert_eq!(connection.close_requested(), Some(TcpSide::Downstream));
    assert!(connection.is_closed());
    assert!(
        connection.upstream_received().is_empty(),
        "the closing callback's data goes nowhere"
    );
    assert!(plugin.logged("downstream closed by Local"));
    assert!(plugin.logged(&format!("connection {id} logged")));
    assert!(matches!(connection.send_downstream_data("more", false), Err(Error::Usage(_))));
    assert!(matches!(connection.set_property("connection.id", 7u64), Err(Error::Usage(_))));
    assert!(matches!(connection.close_upstream(PeerType::Local), Err(Error::Usage(_))));
    connection.close(PeerType::Remote).unwrap();
    assert!(!plugin.logged("downstream closed by Remote"), "the context has ended already");
}

// 1. proxy_continue_stream

#[test]
fn continue_stream_upstream_is_unimplemented_and_other_types_are_ok_or_bad_argument() {
    let (plugin, mut connection) = probe();
    let line = "continue 3;continue 4;continue 0;continue 1;continue 2\n";
    assert_eq!(connection.send_downstream_data(line, false).unwrap(), StreamState::Continued);
    assert_logged(&plugin, "proxy_continue_stream(Upstream) -> Unimplemented");
    assert_logged(&plugin, "proxy_continue_stream(4) -> BadArgument");
    assert_logged(&plugin, "proxy_continue_stream(HttpRequest) -> Ok");
    assert_logged(&plugin, "proxy_continue_stream(HttpResponse) -> Ok");
    assert_logged(&plugin, "proxy_continue_stream(Downstream) -> Ok");
    assert_eq!(connection.upstream_received(), line.as_bytes());
    plugin.take_logs();
    connection.send_upstream_data("continue 3\n", false).unwrap();
    assert_logged(&plugin, "proxy_continue_stream(Upstream) -> Unimplemented");
    assert_eq!(connection.client_received(), b"continue 3\n");
}

#[test]
fn continue_stream_downstream_hands_the_held_bytes_to_the_next_filter_without_calling_the_filter_again() {
    let (plugin, mut connection) = probe();
    assert_eq!(connection.send_downstream_data("hold\n", false).unwrap(), StreamState::Paused);
    assert_eq!(connection.send_downstream_data("more\n", false).unwrap(), StreamState::Paused);
    assert_logged(&plugin, r#"downstream size=10 end=false: "hold\nmore\n""#);
    assert!(connection.upstream_received().is_empty());
    assert_eq!(callbacks(&plugin, "downstream"), 2);

    connection.send_upstream_data("continue 2\n", false).unwrap();
    assert_logged(&plugin, "proxy_continue_stream(Downstream) -> Ok");
    assert_eq!(connection.upstream_received(), b"hold\nmore\n", "released in one piece");
    assert_eq!(connection.client_received(), b"continue 2\n");
    assert_eq!(callbacks(&plugin, "downstream"), 2, "Envoy resumes at tcp_proxy");

    assert_eq!(connection.send_downstream_data("x\n", false).unwrap(), StreamState::Continued);
    assert_logged(&plugin, r#"downstream size=2 end=false: "x\n""#);
    assert_eq!(connection.upstream_received(), b"hold\nmore\nx\n");
}

#[test]
fn continue_stream_downstream_releases_even_from_the_callback_that_stops() {
    let (plugin, mut connection) = probe();
    let state = connection.send_downstream_data("hold;continue 2\n", false).unwrap();
    assert_logged(&plugin, "downstream holds");
    assert_logged(&plugin, "proxy_continue_stream(Downstream) -> Ok");
    assert_eq!(state, StreamState::Continued);
    assert_eq!(connection.upstream_received(), b"hold;continue 2\n");
}

// 2. proxy_set_buffer_bytes

/// Commands on each side's data and what reached the other side in Envoy 1.40: at start 0
/// `size` bytes are drained and the text prepended, at or past the end it is appended, in
/// between it is `BadArgument`.
const SET_LINES: [&str; 7] = [
    "set 0 0 <;get 0 max\n",
    "set 0 3 AB;get 0 max\n",
    "set 2 1 X\n",
    "set 0 max R\n",
    "set max 0 >\n",
    "set 14 5 E\n",
    "set 0 99 \n",
];
const SET_RESULT: &[u8] = b"<set 0 0 <;get 0 max\nAB 0 3 AB;get 0 max\nset 2 1 X\nRset max 0 >\n>set 14 5 E\nE";

fn assert_set_statuses(plugin: &Plugin, buffer: &str) {
    for line in [
        format!(r#"proxy_set_buffer_bytes({buffer}, 0, 0, "<") -> Ok"#),
        format!(r#"proxy_get_buffer_bytes({buffer}, 0, 4294967295) -> Ok "<set 0 0 <;get 0 max\n""#),
        format!(r#"proxy_set_buffer_bytes({buffer}, 0, 3, "AB") -> Ok"#),
        format!(r#"proxy_get_buffer_bytes({buffer}, 0, 4294967295) -> Ok "AB 0 3 AB;get 0 max\n""#),
        format!(r#"proxy_set_buffer_bytes({buffer}, 2, 1, "X") -> BadArgument"#),
        format!(r#"proxy_set_buffer_bytes({buffer}, 0, 4294967295, "R") -> Ok"#),
        format!(r#"proxy_set_buffer_bytes({buffer}, 4294967295, 0, ">") -> Ok"#),
        format!(r#"proxy_set_buffer_bytes({buffer}, 14, 5, "E") -> Ok"#),
        format!(r#"proxy_set_buffer_bytes({buffer}, 0, 99, "") -> Ok"#),
    ] {
        assert_logged(plugin, &line);
    }
}

#[test]
fn set_buffer_bytes_on_downstream_data_replaces_a_prefix_prepends_or_appends() {
    let (plugin, mut connection) = probe();
    for line in SET_LINES {
        connection.send_downstream_data(line, false).unwrap();
    }
    assert_set_statuses(&plugin, "DownstreamData");
    assert_eq!(connection.upstream_received(), SET_RESULT);
}

#[test]
fn set_buffer_bytes_on_upstream_data_replaces_a_prefix_prepends_or_appends() {
    let (plugin, mut connection) = probe();
    for line in SET_LINES {
        connection.send_upstream_data(line, false).unwrap();
    }
    assert_set_statuses(&plugin, "UpstreamData");
    assert_eq!(connection.client_received(), SET_RESULT);
}

// 3. Held data accumulates

#[test]
fn data_a_callback_stops_on_stays_buffered_and_the_next_callback_sees_it_all() {
    let (plugin, mut connection) = probe();
    assert_eq!(connection.send_downstream_data("hel", false).unwrap(), StreamState::Paused);
    assert_eq!(connection.send_downstream_data("lo\n", false).unwrap(), StreamState::Continued);
    assert_logged(&plugin, r#"downstream size=6 end=false: "hello\n""#);
    assert_eq!(connection.upstream_received(), b"hello\n");

    assert_eq!(connection.send_upstream_data("par", false).unwrap(), StreamState::Paused);
    assert!(connection.client_received().is_empty());
    assert_eq!(connection.send_upstream_data("tial\n", false).unwrap(), StreamState::Continued);
    assert_logged(&plugin, r#"upstream size=8 end=false: "partial\n""#);
    assert_eq!(connection.client_received(), b"partial\n");
}

#[test]
fn while_downstream_is_paused_upstream_data_flows_and_downstream_data_accumulates() {
    let (plugin, mut connection) = probe();
    assert_eq!(connection.send_downstream_data("hold\n", false).unwrap(), StreamState::Paused);
    assert_eq!(connection.send_upstream_data("hi\n", false).unwrap(), StreamState::Continued);
    assert_eq!(connection.client_received(), b"hi\n");
    assert_eq!(connection.send_downstream_data("more\n", false).unwrap(), StreamState::Paused);
    assert_eq!(connection.send_downstream_data("", true).unwrap(), StreamState::Paused);
    assert_logged(&plugin, r#"downstream size=10 end=true: "hold\nmore\n""#);
    assert!(connection.upstream_received().is_empty());
    assert!(!connection.upstream_end_received(), "the end of stream is held with the bytes");
}

// 4. proxy_get_buffer_bytes ranges, reach, and proxy_close_stream

#[test]
fn get_buffer_bytes_cuts_the_range_to_the_buffer_and_reads_nothing_past_its_end() {
    let (plugin, mut connection) = probe();
    connection
        .send_downstream_data("get 0 max;get 1 3;get 4 0;get 100 1;get 999999 max;get max max\n", false)
        .unwrap();
    for line in [
        r#"proxy_get_buffer_bytes(DownstreamData, 0, 4294967295) -> Ok "get 0 max;get 1 3;get 4 0;get 100 1;get 999999 max;get max max\n""#,
        r#"proxy_get_buffer_bytes(DownstreamData, 1, 3) -> Ok "et ""#,
        "proxy_get_buffer_bytes(DownstreamData, 4, 0) -> Ok null",
        "proxy_get_buffer_bytes(DownstreamData, 100, 1) -> Ok null",
        "proxy_get_buffer_bytes(DownstreamData, 999999, 4294967295) -> Ok null",
        "proxy_get_buffer_bytes(DownstreamData, 4294967295, 4294967295) -> Ok null",
    ] {
        assert_logged(&plugin, line);
    }
    connection
        .send_upstream_data("get 0 max;get 3 2;get 1000 1;get max 0\n", false)
        .unwrap();
    for line in [
        r#"proxy_get_buffer_bytes(UpstreamData, 0, 4294967295) -> Ok "get 0 max;get 3 2;get 1000 1;get max 0\n""#,
        r#"proxy_get_buffer_bytes(UpstreamData, 3, 2) -> Ok " 0""#,
        "proxy_get_buffer_bytes(UpstreamData, 1000, 1) -> Ok null",
        "proxy_get_buffer_bytes(UpstreamData, 4294967295, 0) -> Ok null",
    ] {
        assert_logged(&plugin, line);
    }
}

#[test]
fn a_held_buffer_is_reachable_from_other_callbacks_until_a_callback_continues() {
    let (plugin, mut connection) = probe();
    connection.send_upstream_data("peek 0 max;poke Q\n", false).unwrap();
    assert_logged(&plugin, "proxy_get_buffer_bytes(DownstreamData, 0, 4294967295) -> Ok null");
    assert_logged(&plugin, r#"proxy_set_buffer_bytes(DownstreamData, max, 0, "Q") -> BadArgument"#);

    connection.send_downstream_data("hold\n", false).unwrap();
    plugin.take_logs();
    connection.send_upstream_data("peek 0 max;poke PING;continue 2\n", false).unwrap();
    assert_logged(&plugin, r#"proxy_get_buffer_bytes(DownstreamData, 0, 4294967295) -> Ok "hold\n""#);
    assert_logged(&plugin, r#"proxy_set_buffer_bytes(DownstreamData, max, 0, "PING") -> Ok"#);
    assert_eq!(connection.upstream_received(), b"hold\nPING");

    plugin.take_logs();
    connection.send_upstream_data("peek 0 max;poke LATE;continue 2\n", false).unwrap();
    assert_logged(&plugin, "proxy_get_buffer_bytes(DownstreamData, 0, 4294967295) -> Ok null");
    assert_logged(&plugin, r#"proxy_set_buffer_bytes(DownstreamData, max, 0, "LATE") -> Ok"#);
    assert_eq!(
        connection.upstream_received(),
        b"hold\nPINGLATE",
        "continuing leaves the (empty) buffer reachable"
    );

    connection.send_downstream_data("x\n", false).unwrap();
    plugin.take_logs();
    connection.send_upstream_data("poke Z\n", false).unwrap();
    assert_logged(&plugin, r#"proxy_set_buffer_bytes(DownstreamData, max, 0, "Z") -> BadArgument"#);
}

#[test]
fn held_upstream_bytes_can_be_edited_from_a_downstream_callback_but_leave_with_the_next_upstream_data() {
    let (plugin, mut connection) = probe();
    assert_eq!(connection.send_upstream_data("abc", false).unwrap(), StreamState::Paused);
    connection.send_downstream_data("peek 0 max;poke XYZ\n", false).unwrap();
    assert_logged(&plugin, r#"proxy_get_buffer_bytes(UpstreamData, 0, 4294967295) -> Ok "abc""#);
    assert_logged(&plugin, r#"proxy_set_buffer_bytes(UpstreamData, max, 0, "XYZ") -> Ok"#);
    assert!(connection.client_received().is_empty(), "no hostcall writes to the client");
    connection.send_upstream_data("\n", false).unwrap();
    assert_logged(&plugin, r#"upstream size=7 end=false: "abcXYZ\n""#);
    assert_eq!(connection.client_received(), b"abcXYZ\n");
}

#[test]
fn close_stream_either_type_closes_the_client_connection_and_drops_that_callbacks_data() {
    for (kind, side) in [("2", TcpSide::Downstream), ("3", TcpSide::Upstream)] {
        let (plugin, mut connection) = probe();
        connection.send_downstream_data("hi\n", false).unwrap();
        connection.send_upstream_data("hello\n", false).unwrap();
        let state = connection.send_downstream_data(format!("close {kind}\n"), false).unwrap();
        assert_eq!(state, StreamState::Reset);
        assert_eq!(connection.close_requested(), Some(side));
        assert_eq!(connection.upstream_received(), b"hi\n");
        assert_eq!(connection.client_received(), b"hello\n", "written before the close: flushed");
        let logs: Vec<String> = plugin.logs().into_iter().map(|l| l.message).collect();
        let close = logs.iter().position(|l| l.starts_with("proxy_close_stream")).unwrap();
        assert_eq!(
            logs[close + 1..],
            ["downstream closed by Local", "connection done", "connection logged"]
        );
        assert!(matches!(connection.send_upstream_data("late\n", false), Err(Error::Usage(_))));
    }
}

#[test]
fn close_stream_of_other_types_does_nothing_on_a_connection() {
    let (plugin, mut connection) = probe();
    let state = connection.send_downstream_data("close 4;close 0;close 1\n", false).unwrap();
    assert_logged(&plugin, "proxy_close_stream(4) -> BadArgument");
    assert_logged(&plugin, "proxy_close_stream(HttpRequest) -> Ok");
    assert_logged(&plugin, "proxy_close_stream(HttpResponse) -> Ok");
    assert_eq!(state, StreamState::Continued);
    assert!(!connection.is_closed());
    assert_eq!(connection.upstream_received(), b"close 4;close 0;close 1\n");
}

#[test]
fn a_local_reply_on_a_connection_is_ok_and_writes_nothing() {
    let (plugin, mut connection) = probe();
    assert_eq!(connection.send_downstream_data("reply\n", false).unwrap(), StreamState::Continued);
    assert_logged(&plugin, "proxy_send_local_response(403) -> Ok");
    assert_eq!(connection.upstream_received(), b"reply\n");
    assert!(connection.client_received().is_empty(), "only upstream data reaches the client");
    connection.send_upstream_data("reply\n", false).unwrap();
    assert_eq!(connection.client_received(), b"reply\n");
}

#[test]
fn bytes_edited_into_upstream_data_are_lost_when_the_same_callback_closes() {
    for kind in ["2", "3"] {
        let (plugin, mut connection) = probe();
        let line = format!("set 0 max -ERR\\n;close {kind}\n");
        assert_eq!(connection.send_upstream_data(line, false).unwrap(), StreamState::Reset);
        assert_logged(&plugin, r#"proxy_set_buffer_bytes(UpstreamData, 0, 4294967295, "-ERR\n") -> Ok"#);
        assert!(connection.client_received().is_empty());
    }
}

#[test]
fn deferred_continue_and_close_apply_in_the_order_they_were_asked_for() {
    let (_plugin, mut connection) = probe();
    connection.send_downstream_data("continue 2;close 2\n", false).unwrap();
    assert_eq!(connection.upstream_received(), b"continue 2;close 2\n");
    let (_plugin, mut connection) = probe();
    connection.send_downstream_data("close 2;continue 2\n", false).unwrap();
    assert!(connection.upstream_received().is_empty());
}
