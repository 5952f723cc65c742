//! What the benches (`llm`, `runs`, `web`) print their figures with: a table of figure, result, goal and
//! met/missed, and medians in milliseconds.
#![allow(dead_code)]
use std::time::Duration;

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The `p`-th percentile (0–100) of `v`, nearest rank.
pub fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The figures as a table: figure, result, goal, met/missed.
#[derive(Default)]
pub struct Table(Vec<[String; 4]>);

impl Table {
    pub fn row(&mut self, figure: &str, result: String, goal: &str, met: Option<bool>) {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        self.0
            .push([figure.into(), result, goal.into(), verdict.into()]);
    }

    pub fn print(&self) {
        let header = ["figure", "result", "goal", ""].map(String::from);
        let rows: Vec<&[String; 4]> = std::iter::once(&header).chain(&self.0).collect();
        let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
        let widths = [width(0), width(1), width(2)];
        for r in rows {
            println!(
                "  {:<w0$}  {:>w1$}  {:<w2$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
        }
    }
}
