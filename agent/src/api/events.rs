//! `GET /v1/events?since=10m&follow=1`: what the agent did, as server-sent events. `since` is
//! a duration back from now (`10m`) or unix seconds (default: the last hour); the events kept
//! (the last 10,000, in the state db) are sent first, then, with `follow`, new ones as they
//! happen. Each event's `data` is JSON: `id`, `time` (unix seconds), `object`, `action`,
//! `reason` (`ok` or `error`), `message`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use berth_engine::state::EventRecord;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;

use super::{error, ApiState};

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    since: Option<String>,
    follow: Option<String>,
}

/// Unix ms from `since`: a duration back from `now_ms`, or unix seconds.
pub fn since_ms(since: Option<&str>, now_ms: u64) -> Result<u64, String> {
    match since {
        None => Ok(now_ms.saturating_sub(3_600_000)),
        Some(s) if s.chars().all(|c| c.is_ascii_digit()) => s
            .parse::<u64>()
            .map(|secs| secs.saturating_mul(1000))
            .map_err(|e| e.to_string()),
        Some(s) => s
            .parse::<berth_spec::DurationSpec>()
            .map(|d| now_ms.saturating_sub(d.get().as_millis() as u64))
            .map_err(|e| format!("since={s}: {e} (hint: a duration such as 10m, or unix seconds)")),
    }
}

fn to_event(e: &EventRecord) -> Event {
    let data = serde_json::json!({
        "id": e.id,
        "time": e.at_ms as f64 / 1000.0,
        "object": e.object,
        "action": e.action,
        "reason": e.result,
        "message": e.message,
    });
    Event::default().id(e.id.to_string()).data(data.to_string())
}

pub async fn get_events(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<EventsQuery>,
) -> Response {
    let now = berth_engine::runtime::exit::now_ms();
    let since = match since_ms(q.since.as_deref(), now) {
        Ok(ms) => ms,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let follow = q
        .follow
        .as_deref()
        .is_some_and(|f| f != "0" && f != "false");
    // Subscribed before the backlog is read: nothing falls between the two.
    let live = state.events.subscribe();
    let backlog = state.events.since(since);
    let last = backlog.last().map_or(0, |e| e.id);
    let past = stream::iter(
        backlog
            .iter()
            .map(|e| Ok::<_, Infallible>(to_event(e)))
            .collect::<Vec<_>>(),
    );
    if !follow {
        return Sse::new(past).into_response();
    }
    Sse::new(past.chain(follow_stream(live, last)))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// New events after id `last`; a follower that falls more than the channel behind skips
/// what it missed (it can ask again with `since`).
fn follow_stream(
    rx: tokio::sync::broadcast::Receiver<EventRecord>,
    last: i64,
) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold((rx, last), |(mut rx, last)| async move {
        loop {
            match rx.recv().await {
                Ok(e) if e.id <= last => continue,
                Ok(e) => {
                    let id = e.id;
                    return Some((Ok(to_event(&e)), (rx, id)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{call, router};

    #[test]
    fn since_is_a_duration_back_or_unix_seconds() {
        assert_eq!(since_ms(Some("10m"), 1_000_000), Ok(400_000));
        assert_eq!(since_ms(Some("1700000000"), 0), Ok(1_700_000_000_000));
        assert_eq!(since_ms(None, 5_000_000), Ok(1_400_000));
        assert!(since_ms(Some("ten"), 0).unwrap_err().contains("hint"));
    }

    #[tokio::test]
    async fn kept_events_are_served_as_server_sent_events() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(berth_engine::state::StateDb::open(dir.path()).unwrap());
        let state = Arc::new(ApiState::for_tests(db, dir.path()));
        state.events.record("Container/web", "create", true, None);
        state.events.record(
            "Container/web",
            "start",
            false,
            Some("exec: no such file".into()),
        );
        let (status, body) = call(router(state.clone()), "GET", "/v1/events?since=1h").await;
        assert_eq!(status, StatusCode::OK);
        let data: Vec<serde_json::Value> = body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(data.len(), 2, "{body}");
        assert_eq!(
            (
                &data[1]["object"],
                &data[1]["action"],
                &data[1]["reason"],
                &data[1]["message"]
            ),
            (
                &"Container/web".into(),
                &"start".into(),
                &"error".into(),
                &"exec: no such file".into()
            )
        );
        assert!(body.contains("id: 2\n"), "{body}");
        let (status, _) = call(router(state), "GET", "/v1/events?since=ten").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}
