//! The NATS gateway without the filter: Envoy terminates the clients' mTLS (TLS first)
//! and `tcp_proxy` carries the NATS protocol to nats-server over plain TCP on loopback.
//! What works here must keep working once the filter sits in front of `tcp_proxy`.

use crate::nats::{Gateway, connect_tls_first, round_trip};
use crate::pki::TestCa;
use async_nats::HeaderMap;
use async_nats::Subscriber;
use futures_util::StreamExt as _;
use std::time::Duration;

/// How long a message may take to arrive.
const WAIT: Duration = Duration::from_secs(10);

const ORDERS: &str = "spiffe://eventseal.test/orders";
const BILLING: &str = "spiffe://eventseal.test/billing";

async fn next(subscriber: &mut Subscriber, who: &str) -> async_nats::Message {
    tokio::time::timeout(WAIT, subscriber.next())
        .await
        .unwrap_or_else(|_| panic!("{who}: no message within {WAIT:?}"))
        .unwrap_or_else(|| panic!("{who}: the subscription ended"))
}

#[tokio::test]
async fn subscribers_through_the_gateway_and_on_the_server_receive_what_is_published_through_it() {
    let gateway = Gateway::start(None);
    let publisher = gateway.client(ORDERS).await;
    let reader = gateway.client(BILLING).await;
    let tap = gateway.tap().await;
    let mut through = reader.subscribe("orders.created").await.expect("subscribe through the gateway");
    let mut direct = tap.subscribe("orders.created").await.expect("subscribe on the server");
    round_trip(&reader).await;
    round_trip(&tap).await;

    let event = br#"{"type":"order.created","data":{"card":"4111111111111111"}}"#;
    let mut headers = HeaderMap::new();
    headers.insert("ce-type", "order.created");
    publisher
        .publish_with_headers("orders.created", headers, event.as_slice().into())
        .await
        .expect("publish through the gateway");
    publisher.flush().await.expect("flush the publish");

    for (subscriber, who) in [(&mut through, "through the gateway"), (&mut direct, "on the server")] {
        let message = next(subscriber, who).await;
        assert_eq!(message.subject.as_str(), "orders.created", "{who}");
        assert_eq!(message.payload.as_ref(), event, "{who}");
        let headers = message.headers.as_ref().unwrap_or_else(|| panic!("{who}: no headers"));
        assert_eq!(headers.get("ce-type").map(|v| v.as_str()), Some("order.created"), "{who}");
    }
}

#[tokio::test]
async fn a_request_through_the_gateway_is_answered_through_it() {
    let gateway = Gateway::start(None);
    let responder = gateway.client(BILLING).await;
    let mut requests = responder.subscribe("billing.quote").await.expect("subscribe");
    round_trip(&responder).await;
    let answering = tokio::spawn(async move {
        let request = next(&mut requests, "the responder").await;
        let reply = request.reply.expect("a request carries a reply subject");
        let mut answer = b"quote for ".to_vec();
        answer.extend_from_slice(&request.payload);
        responder.publish(reply, answer.into()).await.expect("reply");
        responder.flush().await.expect("flush the reply");
    });

    let requester = gateway.client(ORDERS).await;
    let reply = tokio::time::timeout(WAIT, requester.request("billing.quote", "order 7".into()))
        .await
        .expect("an answer in time")
        .expect("an answer");
    assert_eq!(reply.payload.as_ref(), b"quote for order 7");
    answering.await.expect("the responder finished");
}

/// nats-server behind the gateway speaks plain TCP and says so in its `INFO` (no
/// `tls_required`, no `tls_available`); a TLS-first client still takes it, because the TLS
/// it asked for is the one it has with the gateway.
#[tokio::test]
async fn a_tls_first_client_is_greeted_through_the_gateway_by_the_servers_own_info() {
    let gateway = Gateway::start(None);
    let raw = gateway.raw(ORDERS);
    let info = raw.info();
    assert_eq!(info["server_id"], gateway.server.info()["server_id"], "{info}");
    assert!(info.get("tls_required").is_none() && info.get("tls_available").is_none(), "{info}");
    let client = connect_tls_first(gateway.addr(), &gateway.identity(ORDERS))
        .await
        .expect("async-nats with TLS first accepts that INFO");
    assert_eq!(client.server_info().server_id, gateway.server.info()["server_id"]);
}

#[tokio::test]
async fn a_client_whose_certificate_the_gateway_does_not_trust_cannot_connect() {
    let gateway = Gateway::start(None);
    let stranger = TestCa::new().client_trusting(ORDERS, &gateway.ca.cert_pem);
    let refused = connect_tls_first(gateway.addr(), &stranger).await;
    assert!(refused.is_err(), "the gateway let in a certificate from a CA it does not trust");
}
