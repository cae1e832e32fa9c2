//! `berth events [--since 10m] [--filter name=web] [-f]`: what the agent did, from
//! `GET /v1/events` (server-sent events), one line each.

use std::io::BufRead;

use anyhow::{bail, Context};
use serde_json::Value;

use super::client::Client;

pub struct EventsArgs {
    pub since: Option<String>,
    /// `name=web`, `object=Container/web`, `action=start`, `reason=error`.
    pub filters: Vec<String>,
    pub follow: bool,
    pub json: bool,
}

/// Whether `event` passes every `key=value` filter.
pub fn matches(event: &Value, filters: &[(String, String)]) -> bool {
    filters.iter().all(|(k, v)| match k.as_str() {
        "name" => event["object"]
            .as_str()
            .and_then(|o| o.split_once('/'))
            .is_some_and(|(_, name)| name == v),
        key => event[key].as_str() == Some(v.as_str()),
    })
}

pub fn parse_filters(filters: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    filters
        .iter()
        .map(|f| match f.split_once('=') {
            Some((k, v)) if ["name", "object", "action", "reason"].contains(&k) => {
                Ok((k.to_string(), v.to_string()))
            }
            _ => bail!("--filter {f:?}: name=…, object=…, action=… or reason=…"),
        })
        .collect()
}

/// One line for an event: time, object, action, reason, message.
pub fn line(e: &Value) -> String {
    let secs = e["time"].as_f64().unwrap_or(0.0);
    let mut out = format!(
        "{}  {:<28} {:<10} {:<5}",
        super::units::utc(secs as u64),
        e["object"].as_str().unwrap_or("-"),
        e["action"].as_str().unwrap_or("-"),
        e["reason"].as_str().unwrap_or("-"),
    );
    if let Some(m) = e["message"].as_str() {
        out.push_str("  ");
        out.push_str(m);
    }
    out.trim_end().to_string()
}

pub fn run(client: &Client, args: &EventsArgs) -> anyhow::Result<()> {
    let filters = parse_filters(&args.filters)?;
    let mut path = String::from("/v1/events?");
    if let Some(s) = &args.since {
        path.push_str(&format!("since={s}&"));
    }
    if args.follow {
        path.push_str("follow=1");
    }
    let timeout = (!args.follow).then(|| std::time::Duration::from_secs(10));
    let reader = client.open(&path, timeout)?;
    for l in reader.lines() {
        let l = l.context("read events")?;
        let Some(data) = l.strip_prefix("data: ") else {
            continue;
        };
        let event: Value = serde_json::from_str(data).context("parse an event")?;
        if !matches(&event, &filters) {
            continue;
        }
        if args.json {
            println!("{data}");
        } else {
            println!("{}", line(&event));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_and_lines() {
        let e = json!({"id": 3, "time": 1795979066.5, "object": "Container/web", "action": "start",
                       "reason": "error", "message": "exec: no such file"});
        let f = parse_filters(&["name=web".into(), "reason=error".into()]).unwrap();
        assert!(matches(&e, &f));
        assert!(!matches(&e, &parse_filters(&["name=api".into()]).unwrap()));
        assert!(parse_filters(&["colour=red".into()]).is_err());
        assert_eq!(
            line(&e),
            "2026-11-29T19:04:26Z  Container/web                start      error  exec: no such file"
        );
    }
}
