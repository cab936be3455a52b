//! The report's session tables: reconnect storm and failover (and the failover plot).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde_json::Value;

use super::{f, n, Results};
use crate::svg::timeline;

/// The failover results (`failover*.json`), smallest session count first.
pub(super) fn failovers(r: &Results) -> Vec<&Value> {
    let mut v: Vec<&Value> = r
        .iter()
        .filter(|(k, _)| k.starts_with("failover"))
        .map(|(_, v)| v)
        .collect();
    v.sort_by(|a, b| f(a, "args.sessions").total_cmp(&f(b, "args.sessions")));
    v
}

/// The storm's median rows for `server` and `variant` ("Clean", "Persistent").
pub(super) fn storm_row<'a>(r: &'a Results, server: &str, variant: &str) -> Option<&'a Value> {
    r.get("storm")?["medians"]
        .as_array()?
        .iter()
        .find(|m| m["server"] == server && m["variant"] == variant)
}

pub(super) fn storm(md: &mut String, r: &Results) {
    let Some(s) = r.get("storm") else { return };
    let _ = writeln!(
        md,
        "## Reconnect storm ({} connections reconnect at once)\n",
        n(f(s, "args.connections"))
    );
    let _ = writeln!(md, "| server | sessions | runs | connections (fewest set up) | CONNACK/s | per core-second of server CPU | p50 ms | p99 ms | max ms | reconnects without session |");
    let _ = writeln!(
        md,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for m in s["medians"].as_array().into_iter().flatten() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {} |",
            m["server"].as_str().unwrap_or("?"),
            m["variant"].as_str().unwrap_or("?"),
            n(f(m, "runs")),
            n(f(m, "set_up")),
            n(f(m, "connacks_per_sec")),
            n(f(m, "connacks_per_core_second")),
            f(m, "p50_ms"),
            f(m, "p99_ms"),
            f(m, "max_ms"),
            n(f(m, "without_session"))
        );
    }
    let _ = writeln!(md, "\nmosquitto and rumqttd have no Kafka behind them (no session claim is written); peers are capped at 15,000 connections (one process, 20k open files). Rate = reconnects ÷ (first DISCONNECT → last CONNACK); CPU includes closing the old connections.\n");
}

pub(super) fn failover(md: &mut String, r: &Results, dir: &Path) -> Result<()> {
    let all = failovers(r);
    if all.is_empty() {
        return Ok(());
    }
    let _ = writeln!(
        md,
        "## Failover: persistent sessions resumed after SIGKILL of one sluice process\n"
    );
    let _ = writeln!(md, "| sessions | sluice processes | killed process held | resumed | lost | kill → all resumed s | resume p50 / p99 / max ms | detect p99 ms | delay p99 ms | reconnect handshake p50 / p99 ms | initial connect+subscribe p99 ms | survivors' CPU (cores) | survivors' RSS MB before → after |");
    let _ = writeln!(
        md,
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: | --- |"
    );
    let mut series = Vec::new();
    for v in &all {
        for run in v["runs"].as_array().into_iter().flatten() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.2} | {:.0} / {:.0} / {:.0} | {:.0} | {:.0} | {:.0} / {:.0} | {:.0} | {:.2} | {} → {} |",
                n(f(run, "sessions")),
                n(f(run, "sluice_processes")),
                n(f(run, "victim_connections")),
                n(f(run, "resumed")),
                n(f(run, "sessions_lost")),
                f(run, "total_seconds"),
                f(run, "resume.p50_ms"),
                f(run, "resume.p99_ms"),
                f(run, "resume.max_ms"),
                f(run, "detect.p99_ms"),
                f(run, "delay.p99_ms"),
                f(run, "handshake.p50_ms"),
                f(run, "handshake.p99_ms"),
                f(run, "initial_handshake.p99_ms"),
                f(run, "survivor_cpu_cores"),
                n(f(run, "survivor_rss_before") / 1e6),
                n(f(run, "survivor_rss_after") / 1e6),
            );
        }
        // The plot shows each setting's first run.
        if let Some(run) = v["runs"].as_array().and_then(|a| a.first()) {
            let points: Vec<(f64, f64)> = run["timeline"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                .collect();
            series.push((format!("{} sessions", n(f(run, "sessions"))), points));
        }
    }
    let _ = writeln!(md, "\nLost = not resumed + resumed without session present + no check message (one message produced to each session's topic after the resume; every session, moved or not, must get it). Times are from the kill (the clients' wall clock, same machine). Detect = kill → the client sees its connection end; delay = the configured reconnect delay and jitter; handshake = reconnect → CONNACK (session claim in Kafka).\n");
    let title = "Sessions resumed since the kill (first run of each size)";
    if let Some(svg) = timeline(title, "seconds since SIGKILL", "sessions resumed", &series) {
        std::fs::write(dir.join("failover.svg"), svg).context("writing failover.svg")?;
        let _ = writeln!(md, "![sessions resumed over time](failover.svg)\n");
    }
    Ok(())
}
