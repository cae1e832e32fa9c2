//! `berth inspect NAME|network/NAME|volume/NAME`: one object of the running agent, whole, as
//! its API shows it (`GET /v1/containers/NAME`, `/v1/networks/NAME`, `/v1/volumes/NAME`).

use anyhow::{bail, Context};
use serde_json::Value;

use super::client::Client;

/// The API path of what `target` names.
pub fn path_of(target: &str) -> anyhow::Result<String> {
    let (kind, name) = match target.split_once('/') {
        Some(("network", n)) => ("networks", n),
        Some(("volume", n)) => ("volumes", n),
        Some(("container", n)) => ("containers", n),
        Some((other, _)) => {
            bail!("{other:?} is not a kind berth inspects (hint: NAME, container/NAME, network/NAME or volume/NAME)")
        }
        None => ("containers", target),
    };
    if name.is_empty() || name.contains('/') || name.contains('?') {
        bail!("{target:?} does not name one object");
    }
    Ok(format!("/v1/{kind}/{name}"))
}

pub fn run(client: &Client, target: &str, yaml: bool) -> anyhow::Result<()> {
    let body = client.get(&path_of(target)?)?;
    let value: Value = serde_json::from_str(&body).context("parse the agent's answer")?;
    if yaml {
        print!("{}", serde_yaml::to_string(&value)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&value)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_their_endpoint() {
        assert_eq!(path_of("web").unwrap(), "/v1/containers/web");
        assert_eq!(path_of("container/web").unwrap(), "/v1/containers/web");
        assert_eq!(path_of("network/front").unwrap(), "/v1/networks/front");
        assert_eq!(path_of("volume/data").unwrap(), "/v1/volumes/data");
        assert!(path_of("image/x")
            .unwrap_err()
            .to_string()
            .contains("not a kind"));
        assert!(path_of("network/").is_err());
        assert!(path_of("web?follow=1").is_err());
    }
}
