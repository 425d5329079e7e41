//! Network filters: data callbacks, buffering, closing, and the connection lifecycle.

use eventseal_harness::{PeerType, PluginConfig, StreamState, TcpSide};

use crate::tcp_module;

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
    assert_eq!(connection.send_downstream_data("QUIT\n", false).unwrap(), StreamState::Reset);
    assert_eq!(connection.close_requested(), Some(TcpSide::Downstream));
    connection.set_property("connection.id", 7u64).unwrap();
    connection.close_upstream(PeerType::Local).unwrap();
    assert!(plugin.logged("upstream closed by Local"));
}
