//! Every process serves Prometheus metrics that tell an operator what just
//! happened: a user signs up, uses chat and sends one bad frame, and each
//! process's `/metrics` counts exactly that. The services' probes answer too.

use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_tests::ports::free_port;
use switchyard_tests::{AUTH, CHAT, Client, MAILER, Stack, assert_status, signed_up_user};

/// How long a figure updated after the fact (a gauge sampled on a timer, a
/// counter bumped after the mail server answered) may take to settle.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn each_process_counts_what_its_users_did() {
    let auth_http = format!("127.0.0.1:{}", free_port());
    let chat_http = format!("127.0.0.1:{}", free_port());
    let mailer_http = format!("127.0.0.1:{}", free_port());
    let stack = Stack::builder()
        .gateways(1)
        .chat(true)
        .service_env(AUTH, "SWITCHYARD__HTTP__LISTEN", &auth_http)
        .service_env(CHAT, "SWITCHYARD__HTTP__LISTEN", &chat_http)
        .service_env(MAILER, "SWITCHYARD__HTTP__LISTEN", &mailer_http)
        .start()
        .await;

    let mut client = Client::connect(&stack.gateway_url(0)).await;
    signed_up_user(&stack, &mut client, "metrics@example.com").await;
    assert_status(
        &client.request(json!({"action": "LIST_FRIENDS"})).await,
        "FRIENDS",
    );
    client.send_text("not json").await;
    assert_status(
        &client.recv_json(Duration::from_secs(5)).await,
        "BAD_REQUEST",
    );

    let gateway = scrape(&stack.gateway_http(0)).await;
    assert_eq!(
        value(&gateway, "switchyard_gateway_connections", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &gateway,
            "switchyard_gateway_errors_total",
            &[("code", "BAD_REQUEST")]
        ),
        Some(1.0)
    );
    // Each action the gateway put on a stream was timed through the
    // admission's round trip, by the service it went to.
    for (service, actions) in [("auth", 3.0), ("chat", 1.0)] {
        assert_eq!(
            value(
                &gateway,
                "switchyard_gateway_admission_duration_seconds_count",
                &[("service", service)]
            ),
            Some(actions),
            "the gateway timed the admission of each {service} action:\n{gateway}"
        );
    }
    // REGISTER, CONFIRMATION, LOGIN, LIST_FRIENDS and the bad frame.
    assert_eq!(
        value(&gateway, "switchyard_gateway_frames_in_total", &[]),
        Some(5.0)
    );
    for action in ["REGISTER", "CONFIRMATION", "LOGIN", "LIST_FRIENDS"] {
        assert_eq!(
            value(
                &gateway,
                "switchyard_gateway_request_duration_seconds_count",
                &[("action", action)]
            ),
            Some(1.0),
            "one {action} timed by the gateway:\n{gateway}"
        );
    }

    let auth = scrape(&format!("http://{auth_http}")).await;
    for (action, status) in [
        ("REGISTER", "USER_REGISTERED"),
        ("CONFIRMATION", "USER_CONFIRMED"),
        ("LOGIN", "USER_LOGGED"),
    ] {
        assert_eq!(
            value(
                &auth,
                "switchyard_actions_total",
                &[("action", action), ("status", status)]
            ),
            Some(1.0),
            "auth-service counted one {action}:\n{auth}"
        );
    }
    assert_eq!(
        value(
            &auth,
            "switchyard_action_duration_seconds_count",
            &[("action", "LOGIN")]
        ),
        Some(1.0)
    );
    // The lag gauge is sampled on a timer, possibly while an entry was in
    // hand: it must come to rest at zero.
    let auth = scrape_until(&format!("http://{auth_http}"), |text| {
        let stream = [("stream", "switchyard:actions:auth")];
        value(text, "switchyard_bus_backlog_entries", &stream) == Some(0.0)
    })
    .await;
    assert_eq!(
        value(
            &auth,
            "switchyard_bus_backlog_entries",
            &[("stream", "switchyard:actions:auth")]
        ),
        Some(0.0),
        "every auth action was acknowledged"
    );
    // Each of the three waited on the stream, for a slot and for its
    // results to go out, and each wait was timed once. The last is timed
    // after the reply went out, so it may land a moment after the reply.
    let auth_stream = "switchyard:actions:auth";
    let waited = |text: &str, stage: &str| {
        value(
            text,
            "switchyard_bus_entry_wait_seconds_count",
            &[("stream", auth_stream), ("stage", stage)],
        )
    };
    let auth = scrape_until(&format!("http://{auth_http}"), |text| {
        waited(text, "finish") == Some(3.0)
    })
    .await;
    for stage in ["queued", "slot", "finish"] {
        assert_eq!(
            waited(&auth, stage),
            Some(3.0),
            "REGISTER, CONFIRMATION and LOGIN each timed {stage} once:\n{auth}"
        );
    }

    let chat = scrape(&format!("http://{chat_http}")).await;
    assert_eq!(
        value(
            &chat,
            "switchyard_actions_total",
            &[("action", "LIST_FRIENDS"), ("status", "FRIENDS")]
        ),
        Some(1.0),
        "{chat}"
    );

    // MailDev has the mail before the mailer's send call returns and counts it.
    let mailer = scrape_until(&format!("http://{mailer_http}"), |text| {
        value(text, "switchyard_mails_sent_total", &[]).is_some()
    })
    .await;
    assert_eq!(
        value(&mailer, "switchyard_mails_sent_total", &[]),
        Some(1.0),
        "{mailer}"
    );
    assert_eq!(value(&mailer, "switchyard_mails_failed_total", &[]), None);

    for base in [&auth_http, &chat_http, &mailer_http] {
        for probe in ["healthz", "readyz"] {
            let status = reqwest::get(format!("http://{base}/{probe}"))
                .await
                .unwrap_or_else(|err| panic!("GET {base}/{probe}: {err}"))
                .status();
            assert_eq!(status.as_u16(), 200, "{base}/{probe}");
        }
    }
}

async fn scrape(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap_or_else(|err| panic!("GET {base}/metrics: {err}"))
        .text()
        .await
        .expect("metrics are text")
}

/// Scrapes until `settled` holds (or the time is up: the caller's assertion
/// then shows what was there).
async fn scrape_until(base: &str, settled: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + REFRESH_TIMEOUT;
    loop {
        let text = scrape(base).await;
        if settled(&text) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of the sample `name` carrying all of `labels`, if there is one.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            let (series, _) = line.rsplit_once(' ').unwrap_or((line, ""));
            let series_name = series.split('{').next().unwrap_or_default();
            series_name == name
                && labels
                    .iter()
                    .all(|(key, val)| series.contains(&format!("{key}=\"{val}\"")))
        })
        .and_then(|line| line.rsplit_once(' '))
        .and_then(|(_, number)| number.parse().ok())
}
