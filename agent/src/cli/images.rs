//! `berth images`: the running agent's images, as a table or JSON, from `GET /v1/images`:
//! reference, digest, size, when pulled, which containers use them, and pulls in progress.

use anyhow::Context;
use serde_json::Value;

use super::client::Client;
use super::units::{age, human_bytes};

pub fn run(client: &Client, json: bool) -> anyhow::Result<()> {
    let body = client.get("/v1/images")?;
    if json {
        println!("{body}");
        return Ok(());
    }
    let list: Vec<Value> = serde_json::from_str(&body).context("parse image list")?;
    print!("{}", table(&list, super::units::now_secs()));
    Ok(())
}

/// The table `berth images` prints, one line per image, for the time `now` (Unix seconds).
pub fn table(list: &[Value], now: u64) -> String {
    let rows: Vec<[String; 5]> = list
        .iter()
        .map(|i| {
            let digest = match i["digest"].as_str() {
                // `sha256:` plus 12 hex digits, as Docker shortens ids.
                Some(d) => d.chars().take(19).collect(),
                None => "-".to_string(),
            };
            let size = i["size"]
                .as_u64()
                .map(human_bytes)
                .unwrap_or_else(|| "-".into());
            let pulled = match (i["pull"].as_object(), i["pulledAt"].as_u64()) {
                (Some(p), _) => {
                    let done = p["doneBytes"].as_u64().unwrap_or(0);
                    let total = p["totalBytes"].as_u64().unwrap_or(0);
                    format!(
                        "pulling {}% ({} / {})",
                        done * 100 / total.max(1),
                        human_bytes(done),
                        human_bytes(total)
                    )
                }
                (None, Some(at)) => age(now.saturating_sub(at)),
                (None, None) => "-".to_string(),
            };
            let used_by: Vec<&str> = i["usedBy"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let used_by = if used_by.is_empty() {
                "-".to_string()
            } else {
                used_by.join(",")
            };
            [
                i["reference"].as_str().unwrap_or("").to_string(),
                digest,
                size,
                pulled,
                used_by,
            ]
        })
        .collect();
    let header = ["REFERENCE", "DIGEST", "SIZE", "PULLED", "USED BY"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else if i == 2 {
                // Sizes read best right-aligned.
                out.push_str(&format!("{cell:>w$}  "));
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header);
    for row in &rows {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_sizes_ages_users_and_pull_progress() {
        let list: Vec<Value> = serde_json::from_value(serde_json::json!([
            {"reference": "docker.io/library/busybox:1.36", "digest": format!("sha256:{}", "ab".repeat(32)),
             "size": 2_157_000, "pulledAt": 9_940, "layers": 1, "usedBy": ["api", "web"], "pull": null},
            {"reference": "docker.io/library/nginx:1.27", "digest": null, "size": null, "pulledAt": null,
             "layers": 0, "usedBy": ["proxy"], "pull": {"doneBytes": 12_300_000, "totalBytes": 27_000_000}},
            {"reference": "oci-layout:/srv/img:1", "digest": format!("sha256:{}", "cd".repeat(32)),
             "size": 999, "pulledAt": 2_800, "layers": 2, "usedBy": [], "pull": null},
        ]))
        .unwrap();
        assert_eq!(
            table(&list, 10_000),
            "\
REFERENCE                       DIGEST                 SIZE  PULLED                           USED BY
docker.io/library/busybox:1.36  sha256:abababababab  2.2 MB  1 minute ago                     api,web
docker.io/library/nginx:1.27    -                         -  pulling 45% (12.3 MB / 27.0 MB)  proxy
oci-layout:/srv/img:1           sha256:cdcdcdcdcdcd   999 B  2 hours ago                      -
"
        );
    }

    #[test]
    fn ages() {
        assert_eq!(age(1), "1 second ago");
        assert_eq!(age(3 * 86_400 + 5), "3 days ago");
    }
}
