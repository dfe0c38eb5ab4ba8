//! `zdd report`'s page: one deploy drawn as a single self-contained HTML file (inline CSS and
//! SVG, no script, nothing loaded from the network), so it can be attached to an incident and
//! read anywhere, offline, long after the run.
//!
//! The page, top to bottom:
//! - a header: release, commit, start, duration, each host's outcome (and why it failed), and
//!   the watcher's summary lines ([`UrlSummary::line`]);
//! - the timeline: one row per host, one bar per task on one time axis (seconds from the start
//!   of the run), each host's swap of `current` as a vertical line labelled `swap`;
//! - when the deploy was watched, one strip per watched URL, on the same axis and aligned with
//!   the timeline (same x scale, same left edge): which release answered (the share of each
//!   per bin, stacked), requests per second, every failed request as a red tick, p99 latency
//!   per bin, and every host's swap across it. One strip per URL rather than one combined: a
//!   host's own URL waits only for that host's swap, and merged with the load balancer's it
//!   would hide which one users got.
//!
//! What tests can assert on (class names and data attributes, all values escaped):
//! - the header: `<p class="verdict outcome-finished|outcome-failed|outcome-other">`, a
//!   `<dl class="facts">` (`release`, `commit` (12 characters), `started`, `duration`), a
//!   `<table class="outcomes">` with one `<tr data-host="NAME">` per host, and, when watched,
//!   `<ul class="watch-lines">` with one `<li data-url="URL">` line per URL (else a note that
//!   says `Not watched`);
//! - `<svg class="timeline">` (always one), in it `<g class="host" data-host="NAME"
//!   data-outcome="OUTCOME">`: one per host, in the report's order; in it one `<rect
//!   class="task ok|failed" data-task="TASK" data-start-ms="N" data-duration-ms="N">` per task,
//!   with a `<title>TASK on HOST: 1.23 s</title>` (a failed one also has a `failed-label`
//!   text), and, when the host swapped, one `<g class="swap" data-host="NAME"
//!   data-done-ms="N">` (its line and the word `swap`);
//! - `<section class="watch">`, only when watched, and in it `<svg class="strip"
//!   data-url="URL" data-bin-ms="N">`: one per watched URL, holding
//!   `<rect class="rate">` bars, `<g class="served">` bins of `<rect class="served-old">`,
//!   `served-new` and `served-unknown`, one `<line class="failure">` per failed sample, one
//!   `<path class="p99">` and one `<line class="swap" data-host="NAME">` per swap (so the
//!   page holds `class="swap"` once per swap in the timeline and once more per strip).
//!   Legends draw with `legend-swatch` classes, never with these exact ones.
//!
//! The output is stable (no clock, no randomness): the same report gives the same bytes.

use std::collections::BTreeMap;

use crate::output::report::{HostRow, Report, TaskTiming};
use crate::output::watch::{percentile, Sample, Served, Swap, UrlSummary, WatchSummary};

/// The drawings' width in pixels; the page scales them down together on a narrow window, so
/// they stay aligned.
const WIDTH: f64 = 1200.0;
/// Where every plot starts: the column on the left holds host names and lane labels.
const PLOT_LEFT: f64 = 190.0;
/// Where every plot ends.
const PLOT_RIGHT: f64 = WIDTH - 56.0;
/// One host's row in the timeline, and the task bar in it (the space above the bar holds the
/// `swap` label and the failure labels).
const ROW_HEIGHT: f64 = 44.0;
const BAR_TOP: f64 = 17.0;
const BAR_HEIGHT: f64 = 20.0;
/// The band of tick labels above and below a plot.
const AXIS_HEIGHT: f64 = 22.0;
/// The legend's line under a drawing.
const LEGEND_HEIGHT: f64 = 30.0;
/// About how wide one character of an 11 px label is: a label that would not fit in its bar
/// is left out (the bar's hover text still names it).
const CHARACTER_WIDTH: f64 = 6.4;
/// The tick steps the time axis chooses from (ms): the smallest that gives at most
/// [`MOST_TICKS`] ticks.
const TICK_STEPS_MS: [u64; 16] = [
    100, 200, 250, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
    600_000, 900_000, 1_800_000,
];
const MOST_TICKS: u64 = 12;
/// The bin widths the watcher's strip chooses from (ms): the smallest that gives at most
/// [`MOST_BINS`] bins and, at the watcher's rate, about [`REQUESTS_PER_BIN`] requests in each
/// (fewer make a p99 of one or two requests, and a share that jumps from 0 to 100 %).
const BIN_WIDTHS_MS: [u64; 11] = [
    250, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
];
const MOST_BINS: u64 = 150;
const REQUESTS_PER_BIN: f64 = 4.0;

/// The latest moment the page draws (ms from the start of the run): a week. A log or a
/// recording edited by hand may say anything; later times are drawn at this one.
const LATEST_MS: u64 = 7 * 24 * 3_600_000;

/// The page for `report`.
pub fn render(report: &Report) -> String {
    let report = &within_a_week(report);
    let scale = TimeScale::new(report);
    let mut page = String::new();
    page.push_str(&head(report));
    page.push_str("<body>\n");
    page.push_str(&header(report));
    page.push_str(&timeline(report, &scale));
    if let Some(watch) = &report.watch {
        page.push_str(&watch_section(report, watch, &scale));
    }
    page.push_str("</body>\n</html>\n");
    page
}

/// `text` safe inside HTML and SVG, as element text and as a quoted attribute value.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// `report` with every time at most [`LATEST_MS`], so that no arithmetic on them overflows.
fn within_a_week(report: &Report) -> Report {
    let mut report = report.clone();
    let clamp = |ms: &mut u64| *ms = (*ms).min(LATEST_MS);
    clamp(&mut report.duration_ms);
    for row in &mut report.hosts {
        for task in &mut row.tasks {
            clamp(&mut task.start_ms);
            clamp(&mut task.duration_ms);
        }
        if let Some(swap) = row.swap.as_mut() {
            clamp(&mut swap.sent_ms);
            clamp(&mut swap.done_ms);
        }
    }
    if let Some(watch) = report.watch.as_mut() {
        clamp(&mut watch.from_ms);
        clamp(&mut watch.to_ms);
        for url in &mut watch.urls {
            for failure in &mut url.first_failures {
                clamp(&mut failure.at_ms);
            }
        }
    }
    for sample in &mut report.samples {
        clamp(&mut sample.at_ms);
        clamp(&mut sample.latency_ms);
    }
    report
}

/// The time axis every drawing of the page shares: milliseconds from the start of the run to
/// pixels, so a task bar and the requests sent during it sit one above the other.
#[derive(Debug, Clone, Copy)]
struct TimeScale {
    /// The axis ends here (a whole number of ticks, past the last thing drawn).
    end_ms: u64,
    tick_ms: u64,
}

impl TimeScale {
    fn new(report: &Report) -> TimeScale {
        let last = last_moment(report).max(1);
        let tick_ms = tick_step(last);
        TimeScale {
            end_ms: last.div_ceil(tick_ms) * tick_ms,
            tick_ms,
        }
    }

    /// Where `ms` is, in pixels from the drawing's left edge.
    fn x(&self, ms: u64) -> f64 {
        PLOT_LEFT + (PLOT_RIGHT - PLOT_LEFT) * ms as f64 / self.end_ms as f64
    }

    /// How wide `ms` is, in pixels; at least 1, so a task of 0 ms still shows.
    fn width(&self, ms: u64) -> f64 {
        ((PLOT_RIGHT - PLOT_LEFT) * ms as f64 / self.end_ms as f64).max(1.0)
    }

    /// Every tick, from 0 to the end.
    fn ticks(&self) -> impl Iterator<Item = u64> {
        let tick_ms = self.tick_ms;
        (0..=self.end_ms / tick_ms).map(move |index| index * tick_ms)
    }
}

/// The last moment anything of the report happened: a task's end, a swap, the watcher's end,
/// a sample.
fn last_moment(report: &Report) -> u64 {
    let tasks = report
        .hosts
        .iter()
        .flat_map(|host| &host.tasks)
        .map(|task| task.start_ms.saturating_add(task.duration_ms));
    let swaps = report
        .hosts
        .iter()
        .filter_map(|host| host.swap.as_ref())
        .map(|swap| swap.done_ms);
    let watch = report.watch.iter().map(|watch| watch.to_ms);
    let samples = report.samples.iter().map(|sample| sample.at_ms);
    tasks
        .chain(swaps)
        .chain(watch)
        .chain(samples)
        .fold(report.duration_ms, u64::max)
}

/// The step between two ticks of an axis that ends at `end_ms`.
fn tick_step(end_ms: u64) -> u64 {
    TICK_STEPS_MS
        .iter()
        .copied()
        .find(|step| end_ms.div_ceil(*step) <= MOST_TICKS)
        .unwrap_or_else(|| {
            let hour = 3_600_000;
            hour * end_ms.div_ceil(hour * MOST_TICKS).max(1)
        })
}

/// `5 s`, `0.25 s`: a tick's label.
fn tick_label(ms: u64) -> String {
    format!("{} s", ms as f64 / 1000.0)
}

/// `1.23 s`: a duration, as the page writes it.
fn seconds(ms: u64) -> String {
    format!("{:.2} s", ms as f64 / 1000.0)
}

/// `+4.21 s`: a moment of the run, as the page writes it.
fn moment(ms: u64) -> String {
    format!("+{}", seconds(ms))
}

/// A number for an SVG attribute: one decimal is finer than a pixel needs.
fn number(value: f64) -> String {
    let rounded = format!("{value:.1}");
    rounded
        .strip_suffix(".0")
        .map(str::to_string)
        .unwrap_or(rounded)
}

/// The document's head: title and the page's whole style sheet.
fn head(report: &Report) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>zdd deploy {}</title>\n<style>\n{}</style>\n</head>\n",
        escape(&report.release),
        STYLE
    )
}

/// The page's style sheet. Colours come with words, hatching or shapes: nothing is told by
/// colour alone.
const STYLE: &str = "\
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif; color: #1d2430; background: #fff; margin: 0; padding: 24px 28px 40px; }
main, header, section { max-width: 1200px; margin: 0 auto; }
h1 { font-size: 22px; margin: 0 0 12px; font-weight: 650; }
h1 .release, code { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; }
h2 { font-size: 16px; margin: 28px 0 6px; font-weight: 650; }
h3 { font-size: 14px; margin: 20px 0 2px; font-weight: 600; font-family: ui-monospace, 'DejaVu Sans Mono', monospace; }
.facts { display: flex; flex-wrap: wrap; gap: 6px 28px; margin: 0 0 14px; }
.facts div { display: flex; gap: 8px; }
.facts dt { color: #5b6575; }
.facts dd { margin: 0; font-weight: 600; }
table.outcomes { border-collapse: collapse; margin: 0 0 10px; }
table.outcomes th, table.outcomes td { text-align: left; padding: 3px 18px 3px 0; vertical-align: top; }
table.outcomes th { color: #5b6575; font-weight: 500; border-bottom: 1px solid #d8dde5; }
table.outcomes td.host-name { font-weight: 600; }
.outcome-finished { color: #1e7a3c; font-weight: 600; }
.outcome-failed { color: #b42318; font-weight: 600; }
.outcome-other { color: #5b6575; font-weight: 600; }
td.message { color: #b42318; font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: 12.5px; white-space: pre-wrap; }
ul.watch-lines { margin: 4px 0 0; padding-left: 18px; font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: 12.5px; }
p.verdict { font-size: 16px; margin: -4px 0 12px; }
p.note, p.watch-line { color: #5b6575; margin: 2px 0 4px; font-size: 13px; }
p.watch-line { font-family: ui-monospace, 'DejaVu Sans Mono', monospace; font-size: 12.5px; }
svg { display: block; max-width: 100%; height: auto; font-family: system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif; }
svg text { font-size: 11px; fill: #1d2430; }
.row-band { fill: #f4f6f9; }
.lane { fill: #f4f6f9; }
.grid { stroke: #e1e5eb; stroke-width: 1; }
.axis-line { stroke: #9aa3b1; stroke-width: 1; }
text.tick { fill: #5b6575; font-size: 10.5px; }
text.host-name { font-size: 12.5px; font-weight: 600; }
text.host-outcome { font-size: 10.5px; }
text.host-outcome.outcome-finished { fill: #1e7a3c; }
text.host-outcome.outcome-failed { fill: #b42318; }
text.host-outcome.outcome-other { fill: #5b6575; }
rect.task.ok { fill: #8fd3a4; stroke: #2f8a4e; stroke-width: 1; }
rect.task.failed { fill: url(#failed-hatch); stroke: #8f1d14; stroke-width: 1.5; }
text.task-label { font-size: 10.5px; fill: #123a22; pointer-events: none; }
text.failed-label { font-size: 10.5px; font-weight: 700; fill: #b42318; }
.swap line, line.swap, line.swap-solid { stroke: #1f4fb4; stroke-width: 2; }
line.swap { stroke-dasharray: 4 3; }
.swap text, text.swap-label { font-size: 10px; font-weight: 700; fill: #1f4fb4; }
text.lane-label { font-size: 11.5px; font-weight: 600; fill: #33404f; }
text.lane-scale { font-size: 10px; fill: #5b6575; }
rect.rate { fill: #a9bcd8; }
rect.served-old { fill: #e9a23b; }
rect.served-new { fill: #2a9d8f; }
rect.served-unknown { fill: #cfd5dd; }
line.failure { stroke: #d62728; stroke-width: 2; }
path.p99 { fill: none; stroke: #6b3fa0; stroke-width: 1.8; stroke-linejoin: round; }
text.legend { font-size: 11px; fill: #33404f; }
";

/// The header: what was deployed, when, how it ended on each host, and what the watcher saw.
fn header(report: &Report) -> String {
    let mut html = String::from("<header>\n");
    html.push_str(&format!(
        "<h1>Deploy of <span class=\"release\">{}</span></h1>\n",
        escape(&report.release)
    ));
    html.push_str(&verdict(&report.hosts));
    html.push_str("<dl class=\"facts\">\n");
    html.push_str(&fact("release", &report.release));
    if let Some(commit) = &report.commit {
        let short: String = commit.chars().take(12).collect();
        html.push_str(&fact("commit", &short));
    }
    html.push_str(&fact("started", &report.started));
    html.push_str(&fact("duration", &seconds(report.duration_ms)));
    html.push_str("</dl>\n");
    html.push_str(&outcomes(report));
    match &report.watch {
        Some(watch) => html.push_str(&watch_lines(watch)),
        None => html.push_str(
            "<p class=\"note\">Not watched: <code>zdd run --watch URL</code> records what users got during a deploy.</p>\n",
        ),
    }
    html.push_str("</header>\n");
    html
}

/// The run in one line, first thing under the title: `✗ failed on web2 (1 of 2 hosts)`,
/// `✓ finished on all 3 hosts`, or how many hosts ended each way.
fn verdict(hosts: &[HostRow]) -> String {
    let failed: Vec<&str> = hosts
        .iter()
        .filter(|host| host.outcome == "failed")
        .map(|host| host.host.as_str())
        .collect();
    let (class, text) = if !failed.is_empty() {
        let mut names = failed
            .iter()
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if failed.len() > 5 {
            names.push_str(&format!(" and {} more", failed.len() - 5));
        }
        (
            "outcome-failed",
            format!(
                "✗ failed on {names} ({} of {} hosts)",
                failed.len(),
                hosts.len()
            ),
        )
    } else if !hosts.is_empty() && hosts.iter().all(|host| host.outcome == "finished") {
        let text = match hosts {
            [only] => format!("✓ finished on {}", only.host),
            _ => format!("✓ finished on all {} hosts", hosts.len()),
        };
        ("outcome-finished", text)
    } else {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for host in hosts {
            *counts.entry(host.outcome.as_str()).or_default() += 1;
        }
        let words: Vec<String> = counts
            .iter()
            .map(|(outcome, count)| format!("{outcome} on {count}"))
            .collect();
        ("outcome-other", format!("hosts: {}", words.join(", ")))
    };
    format!("<p class=\"verdict {class}\">{}</p>\n", escape(&text))
}

/// One `name: value` of the header.
fn fact(name: &str, value: &str) -> String {
    format!(
        "<div><dt>{}</dt><dd>{}</dd></div>\n",
        escape(name),
        escape(value)
    )
}

/// The class a host's outcome is drawn with: the release log's events have their own, anything
/// else is drawn plainly (the class is never taken from the data).
fn outcome_class(outcome: &str) -> &'static str {
    match outcome {
        "finished" => "outcome-finished",
        "failed" => "outcome-failed",
        _ => "outcome-other",
    }
}

/// `✓ finished`, `✗ failed`: an outcome in words, with a mark that does not need colour.
fn outcome_words(outcome: &str) -> String {
    let mark = match outcome {
        "finished" => "✓ ",
        "failed" => "✗ ",
        _ => "",
    };
    format!("{mark}{}", escape(outcome))
}

/// The table of hosts: outcome, when `current` was swapped, why it failed.
fn outcomes(report: &Report) -> String {
    let mut html = String::from(
        "<table class=\"outcomes\">\n<thead><tr><th>host</th><th>outcome</th><th>swap</th><th>message</th></tr></thead>\n<tbody>\n",
    );
    for host in &report.hosts {
        let swap = host
            .swap
            .as_ref()
            .map(|swap| moment(swap.done_ms))
            .unwrap_or_else(|| "not swapped".to_string());
        html.push_str(&format!(
            "<tr data-host=\"{}\"><td class=\"host-name\">{}</td><td class=\"{}\">{}</td><td>{}</td><td class=\"message\">{}</td></tr>\n",
            escape(&host.host),
            escape(&host.host),
            outcome_class(&host.outcome),
            outcome_words(&host.outcome),
            escape(&swap),
            escape(host.message.as_deref().unwrap_or("")),
        ));
    }
    html.push_str("</tbody>\n</table>\n");
    html
}

/// The watcher's summary, one line per URL.
fn watch_lines(watch: &WatchSummary) -> String {
    let mut html = String::from("<ul class=\"watch-lines\">\n");
    for url in &watch.urls {
        html.push_str(&format!(
            "<li data-url=\"{}\">{}</li>\n",
            escape(&url.url),
            escape(&url.line())
        ));
    }
    html.push_str("</ul>\n");
    html
}

/// The opening tag of one of the page's drawings, `height` pixels high.
fn svg_open(class: &str, height: f64, label: &str, attributes: &str) -> String {
    format!(
        "<svg class=\"{class}\"{attributes} width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">\n",
        number(WIDTH),
        number(height),
        number(WIDTH),
        number(height),
        escape(label)
    )
}

/// The timeline: a time axis above and below, one row per host, a legend.
fn timeline(report: &Report, scale: &TimeScale) -> String {
    let rows_top = AXIS_HEIGHT;
    let rows_bottom = rows_top + ROW_HEIGHT * report.hosts.len() as f64;
    let height = rows_bottom + AXIS_HEIGHT + LEGEND_HEIGHT;
    let mut svg = String::from("<section class=\"timeline\">\n<h2>Timeline</h2>\n<p class=\"note\">Seconds from the start of the run; hover a bar for its task and duration.</p>\n");
    svg.push_str(&svg_open(
        "timeline",
        height,
        "the deploy's tasks, one row per host, on the run's time axis",
        "",
    ));
    svg.push_str(FAILED_HATCH);
    svg.push_str(&grid(scale, rows_top, rows_bottom));
    svg.push_str(&tick_labels(scale, rows_top - 7.0));
    for (index, host) in report.hosts.iter().enumerate() {
        svg.push_str(&host_row(host, index, rows_top, scale));
    }
    svg.push_str(&axis_line(rows_bottom));
    svg.push_str(&tick_labels(scale, rows_bottom + 15.0));
    svg.push_str(&timeline_legend(rows_bottom + AXIS_HEIGHT + 18.0));
    svg.push_str("</svg>\n</section>\n");
    svg
}

/// The pattern a failed task is filled with: red with light stripes, so a failed bar is told
/// from a good one without its colour.
const FAILED_HATCH: &str = "<defs><pattern id=\"failed-hatch\" patternUnits=\"userSpaceOnUse\" width=\"6\" height=\"6\" patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#d64541\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#fbe3e1\" stroke-width=\"2.4\"/></pattern></defs>\n";

/// Light vertical lines at every tick, from `top` to `bottom`.
fn grid(scale: &TimeScale, top: f64, bottom: f64) -> String {
    let mut svg = String::from("<g class=\"grid-lines\">");
    for tick in scale.ticks() {
        let x = number(scale.x(tick));
        svg.push_str(&format!(
            "<line class=\"grid\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/>",
            number(top),
            number(bottom)
        ));
    }
    svg.push_str("</g>\n");
    svg
}

/// The axis's horizontal line at `y`, across the plot.
fn axis_line(y: f64) -> String {
    format!(
        "<line class=\"axis-line\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/>\n",
        number(PLOT_LEFT),
        number(PLOT_RIGHT),
        y = number(y)
    )
}

/// The ticks' labels (`0 s`, `5 s`, ...) with their baseline at `y`.
fn tick_labels(scale: &TimeScale, y: f64) -> String {
    let mut svg = String::from("<g class=\"axis\">");
    for tick in scale.ticks() {
        svg.push_str(&format!(
            "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            number(scale.x(tick)),
            number(y),
            tick_label(tick)
        ));
    }
    svg.push_str("</g>\n");
    svg
}

/// One host's row: its name and outcome on the left, its tasks, its swap.
fn host_row(host: &HostRow, index: usize, rows_top: f64, scale: &TimeScale) -> String {
    let top = rows_top + ROW_HEIGHT * index as f64;
    let mut svg = format!(
        "<g class=\"host\" data-host=\"{}\" data-outcome=\"{}\">",
        escape(&host.host),
        escape(&host.outcome)
    );
    if index % 2 == 0 {
        svg.push_str(&format!(
            "<rect class=\"row-band\" x=\"0\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
            number(top),
            number(WIDTH),
            number(ROW_HEIGHT)
        ));
    }
    svg.push_str(&format!(
        "<text class=\"host-name\" x=\"{}\" y=\"{}\" text-anchor=\"end\"><title>{}</title>{}</text>",
        number(PLOT_LEFT - 14.0),
        number(top + 20.0),
        escape(&host.host),
        escape(&shortened(&host.host, HOST_NAME_CHARACTERS))
    ));
    svg.push_str(&format!(
        "<text class=\"host-outcome {}\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        outcome_class(&host.outcome),
        number(PLOT_LEFT - 14.0),
        number(top + 34.0),
        outcome_words(&host.outcome)
    ));
    for task in &host.tasks {
        svg.push_str(&task_bar(&host.host, task, top, scale));
    }
    if let Some(swap) = &host.swap {
        svg.push_str(&swap_mark(swap, top, scale));
    }
    svg.push_str("</g>\n");
    svg
}

/// A task's bar: x by its start, width by its duration, filled by its outcome; its name in it
/// when it fits; a failed one also says `✗ failed: TASK` beside it.
fn task_bar(host: &str, task: &TaskTiming, top: f64, scale: &TimeScale) -> String {
    let failed = task.outcome != "ok";
    let x = scale.x(task.start_ms);
    let width = scale.width(task.duration_ms);
    let bar_top = top + BAR_TOP;
    let mut svg = format!(
        "<rect class=\"task {}\" data-task=\"{}\" data-start-ms=\"{}\" data-duration-ms=\"{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"2\"><title>{} on {}: {}{}</title></rect>",
        if failed { "failed" } else { "ok" },
        escape(&task.task),
        task.start_ms,
        task.duration_ms,
        number(x),
        number(bar_top),
        number(width),
        number(BAR_HEIGHT),
        escape(&task.task),
        escape(host),
        seconds(task.duration_ms),
        if failed { " (failed)" } else { "" },
    );
    if failed {
        svg.push_str(&failed_label(&task.task, x, width, top));
    } else if label_width(&task.task) + 8.0 <= width {
        svg.push_str(&format!(
            "<text class=\"task-label\" x=\"{}\" y=\"{}\">{}</text>",
            number(x + 4.0),
            number(bar_top + 14.0),
            escape(&task.task)
        ));
    }
    svg
}

/// How many characters of a host's name fit in the timeline's left column; a longer name is
/// cut, its whole in the hover text and in the header's table.
const HOST_NAME_CHARACTERS: usize = 22;

/// `text`, cut to `most` characters with an ellipsis when it is longer.
fn shortened(text: &str, most: usize) -> String {
    if text.chars().count() <= most {
        return text.to_string();
    }
    let mut short: String = text.chars().take(most - 1).collect();
    short.push('…');
    short
}

/// About how wide `text` is, drawn as a label.
fn label_width(text: &str) -> f64 {
    text.chars().count() as f64 * CHARACTER_WIDTH
}

/// `✗ failed: TASK`, above a failed bar: from its left edge, or ending at its right edge when
/// it would run past the plot.
fn failed_label(task: &str, x: f64, width: f64, top: f64) -> String {
    let text = format!("✗ failed: {task}");
    let (anchor, at) = if x + label_width(&text) <= PLOT_RIGHT {
        ("start", x)
    } else {
        ("end", x + width)
    };
    format!(
        "<text class=\"failed-label\" x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
        number(at),
        number(top + 13.0),
        escape(&text)
    )
}

/// A host's swap on its row: a vertical line when it was done, labelled `swap`.
fn swap_mark(swap: &Swap, top: f64, scale: &TimeScale) -> String {
    let x = scale.x(swap.done_ms);
    format!(
        "<g class=\"swap\" data-host=\"{}\" data-done-ms=\"{}\"><title>{}</title><line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/><text x=\"{}\" y=\"{}\">swap</text></g>",
        escape(&swap.host),
        swap.done_ms,
        escape(&swap_words(swap)),
        number(top + 3.0),
        number(top + ROW_HEIGHT - 3.0),
        number(x + 3.0),
        number(top + 12.0),
        x = number(x),
    )
}

/// `web1 serves the new release from +4.21 s (swap sent at +4.20 s)`: a swap's hover text.
fn swap_words(swap: &Swap) -> String {
    format!(
        "{} serves the new release from {} (swap sent at {})",
        swap.host,
        moment(swap.done_ms),
        moment(swap.sent_ms)
    )
}

/// The timeline's legend, its baseline at `y`.
fn timeline_legend(y: f64) -> String {
    let mut svg = String::from("<g class=\"legend\">");
    let mut x = PLOT_LEFT;
    svg.push_str(&legend_swatch(x, y, "task ok"));
    svg.push_str(&legend_text(x + 24.0, y, "task done"));
    x += 120.0;
    svg.push_str(&legend_swatch(x, y, "task failed"));
    svg.push_str(&legend_text(x + 24.0, y, "task failed"));
    x += 120.0;
    svg.push_str(&legend_line(x, y, "swap-solid"));
    svg.push_str(&legend_text(
        x + 12.0,
        y,
        "swap: the host serves the new release from here",
    ));
    svg.push_str("</g>\n");
    svg
}

/// A small box in the legend, drawn like the things of `class`.
fn legend_swatch(x: f64, y: f64, class: &str) -> String {
    format!(
        "<rect class=\"legend-swatch {class}\" x=\"{}\" y=\"{}\" width=\"18\" height=\"11\" rx=\"2\"/>",
        number(x),
        number(y - 10.0)
    )
}

/// A short vertical line in the legend, drawn like the lines of `class` (`swap`, the
/// timeline's `swap-solid`, `failure`).
fn legend_line(x: f64, y: f64, class: &str) -> String {
    format!(
        "<line class=\"legend-swatch {class}\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/>",
        number(y - 12.0),
        number(y + 2.0),
        x = number(x + 4.0)
    )
}

/// A legend's words.
fn legend_text(x: f64, y: f64, text: &str) -> String {
    format!(
        "<text class=\"legend\" x=\"{}\" y=\"{}\">{}</text>",
        number(x),
        number(y),
        escape(text)
    )
}

/// What users got: one strip per watched URL, then the legend.
fn watch_section(report: &Report, watch: &WatchSummary, scale: &TimeScale) -> String {
    let bin_ms = bin_width(watch.rate, scale.end_ms);
    let swaps: Vec<&Swap> = report
        .hosts
        .iter()
        .filter_map(|host| host.swap.as_ref())
        .collect();
    let mut html = String::from("<section class=\"watch\">\n<h2>What users got</h2>\n");
    html.push_str(&format!(
        "<p class=\"note\">The watcher asked each URL {} times a second from {} to {}; bins of {}.</p>\n",
        number(watch.rate),
        moment(watch.from_ms),
        moment(watch.to_ms),
        seconds(bin_ms)
    ));
    for (index, url) in watch.urls.iter().enumerate() {
        let samples: Vec<&Sample> = report
            .samples
            .iter()
            .filter(|sample| sample.url == index)
            .collect();
        html.push_str(&strip(url, &samples, &swaps, bin_ms, scale));
    }
    html.push_str(&watch_legend());
    html.push_str("</section>\n");
    html
}

/// How wide the strip's bins are, for a watcher asking `rate` times a second over `end_ms`.
fn bin_width(rate: f64, end_ms: u64) -> u64 {
    let rate = if rate.is_finite() && rate > 0.0 {
        rate
    } else {
        1.0
    };
    BIN_WIDTHS_MS
        .iter()
        .copied()
        .find(|width| {
            end_ms.div_ceil(*width) <= MOST_BINS
                && *width as f64 * rate / 1000.0 >= REQUESTS_PER_BIN
        })
        .unwrap_or(BIN_WIDTHS_MS[BIN_WIDTHS_MS.len() - 1])
}

/// The requests of one URL sent in one bin of the strip.
#[derive(Debug, Default)]
struct Bin {
    start_ms: u64,
    requests: u64,
    failed: u64,
    old: u64,
    new: u64,
    unknown: u64,
    latencies: Vec<u64>,
}

impl Bin {
    fn p99(&self) -> u64 {
        percentile(&mut self.latencies.clone(), 0.99)
    }

    /// `+4.00 s to +5.00 s: 5 requests, 1 failed, p99 23 ms; new 2, old 2, not named 1`.
    fn words(&self, bin_ms: u64) -> String {
        format!(
            "{} to {}: {} requests, {} failed, p99 {} ms; new release {}, old release {}, not named {}",
            moment(self.start_ms),
            moment(self.start_ms + bin_ms),
            self.requests,
            self.failed,
            self.p99(),
            self.new,
            self.old,
            self.unknown
        )
    }
}

/// The samples in bins of `bin_ms`, by time; bins with no request are left out.
fn bins(samples: &[&Sample], bin_ms: u64) -> Vec<Bin> {
    let mut bins: BTreeMap<u64, Bin> = BTreeMap::new();
    for sample in samples {
        let index = sample.at_ms / bin_ms;
        let bin = bins.entry(index).or_insert_with(|| Bin {
            start_ms: index * bin_ms,
            ..Bin::default()
        });
        bin.requests += 1;
        bin.failed += u64::from(sample.failed());
        match sample.served {
            Served::Old => bin.old += 1,
            Served::New => bin.new += 1,
            Served::Unknown => bin.unknown += 1,
        }
        bin.latencies.push(sample.latency_ms);
    }
    bins.into_values().collect()
}

/// A lane of a strip: where it is, from its top, and how high.
#[derive(Debug, Clone, Copy)]
struct Lane {
    top: f64,
    height: f64,
}

impl Lane {
    fn bottom(&self) -> f64 {
        self.top + self.height
    }
}

/// The lanes of a strip, top to bottom.
struct StripLanes {
    swaps: Lane,
    served: Lane,
    rate: Lane,
    failures: Lane,
    p99: Lane,
    height: f64,
}

impl StripLanes {
    fn new() -> StripLanes {
        let gap = 6.0;
        let swaps = Lane {
            top: 0.0,
            height: SWAP_LABEL_LINE * SWAP_LABEL_LINES as f64 + 2.0,
        };
        let served = Lane {
            top: swaps.bottom() + 2.0,
            height: 30.0,
        };
        let rate = Lane {
            top: served.bottom() + gap,
            height: 40.0,
        };
        let failures = Lane {
            top: rate.bottom() + gap,
            height: 18.0,
        };
        let p99 = Lane {
            top: failures.bottom() + gap,
            height: 66.0,
        };
        let height = p99.bottom() + AXIS_HEIGHT;
        StripLanes {
            swaps,
            served,
            rate,
            failures,
            p99,
            height,
        }
    }
}

/// One watched URL's strip: its name, then its lanes on the run's time axis.
fn strip(
    url: &UrlSummary,
    samples: &[&Sample],
    swaps: &[&Swap],
    bin_ms: u64,
    scale: &TimeScale,
) -> String {
    let lanes = StripLanes::new();
    let bins = bins(samples, bin_ms);
    let mut html = format!("<h3>{}</h3>\n", escape(&url.url));
    html.push_str(&svg_open(
        "strip",
        lanes.height,
        &format!("what {} answered during the deploy", url.url),
        &format!(
            " data-url=\"{}\" data-bin-ms=\"{bin_ms}\"",
            escape(&url.url)
        ),
    ));
    for lane in [lanes.served, lanes.rate, lanes.failures, lanes.p99] {
        html.push_str(&lane_background(lane));
    }
    html.push_str(&grid(scale, lanes.served.top, lanes.p99.bottom()));
    html.push_str(&served_lane(&bins, bin_ms, lanes.served, scale));
    html.push_str(&rate_lane(&bins, bin_ms, lanes.rate, scale));
    html.push_str(&failure_lane(samples, lanes.failures, scale));
    html.push_str(&p99_lane(&bins, bin_ms, lanes.p99, scale));
    html.push_str(&strip_swaps(swaps, &lanes, scale));
    html.push_str(&axis_line(lanes.p99.bottom()));
    html.push_str(&tick_labels(scale, lanes.p99.bottom() + 15.0));
    html.push_str("</svg>\n");
    html
}

/// A lane's light background, across the plot.
fn lane_background(lane: Lane) -> String {
    format!(
        "<rect class=\"lane\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>\n",
        number(PLOT_LEFT),
        number(lane.top),
        number(PLOT_RIGHT - PLOT_LEFT),
        number(lane.height)
    )
}

/// A lane's name in the left column, and under it what its top stands for when it has a scale.
fn lane_label(lane: Lane, name: &str, scale_words: Option<&str>) -> String {
    let x = number(PLOT_LEFT - 12.0);
    let mut svg = format!(
        "<text class=\"lane-label\" x=\"{x}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        number(lane.top + 12.0),
        escape(name)
    );
    if let Some(words) = scale_words {
        svg.push_str(&format!(
            "<text class=\"lane-scale\" x=\"{x}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            number(lane.top + 25.0),
            escape(words)
        ));
    }
    svg.push('\n');
    svg
}

/// Which release answered, per bin: the share of the new release at the bottom, the old one
/// above it, answers that named none on top.
fn served_lane(bins: &[Bin], bin_ms: u64, lane: Lane, scale: &TimeScale) -> String {
    let mut svg = lane_label(lane, "served by", Some("old / new release"));
    for bin in bins {
        let x = number(scale.x(bin.start_ms));
        let width = number(bin_pixels(bin_ms, scale));
        svg.push_str(&format!(
            "<g class=\"served\" data-start-ms=\"{}\"><title>{}</title>",
            bin.start_ms,
            escape(&bin.words(bin_ms))
        ));
        let mut bottom = lane.bottom();
        for (class, count) in [
            ("served-new", bin.new),
            ("served-old", bin.old),
            ("served-unknown", bin.unknown),
        ] {
            if count == 0 {
                continue;
            }
            let height = lane.height * count as f64 / bin.requests as f64;
            bottom -= height;
            svg.push_str(&format!(
                "<rect class=\"{class}\" x=\"{x}\" y=\"{}\" width=\"{width}\" height=\"{}\"/>",
                number(bottom),
                number(height)
            ));
        }
        svg.push_str("</g>");
    }
    svg.push('\n');
    svg
}

/// How wide a bin's bar is: its width on the axis, less a pixel between neighbours.
fn bin_pixels(bin_ms: u64, scale: &TimeScale) -> f64 {
    (scale.width(bin_ms) - 1.0).max(1.0)
}

/// Requests per second, one bar per bin, on a scale from 0 to a round number.
fn rate_lane(bins: &[Bin], bin_ms: u64, lane: Lane, scale: &TimeScale) -> String {
    let per_second = |bin: &Bin| bin.requests as f64 * 1000.0 / bin_ms as f64;
    let top = round_up(bins.iter().map(per_second).fold(0.0, f64::max));
    let mut svg = lane_label(
        lane,
        "requests / s",
        Some(&format!("top: {} / s", number(top))),
    );
    for bin in bins {
        let height = (lane.height - 2.0) * per_second(bin) / top;
        svg.push_str(&format!(
            "<rect class=\"rate\" data-start-ms=\"{}\" data-requests=\"{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>",
            bin.start_ms,
            bin.requests,
            number(scale.x(bin.start_ms)),
            number(lane.bottom() - height),
            number(bin_pixels(bin_ms, scale)),
            number(height),
            escape(&bin.words(bin_ms))
        ));
    }
    svg.push('\n');
    svg
}

/// The smallest of 1, 2, 5, 10, 20, 50, ... that is at least `value` (at least 1).
fn round_up(value: f64) -> f64 {
    let mut step = 1.0;
    loop {
        for factor in [1.0, 2.0, 5.0] {
            if step * factor >= value {
                return step * factor;
            }
        }
        step *= 10.0;
    }
}

/// Every failed request, a red tick when it was sent.
fn failure_lane(samples: &[&Sample], lane: Lane, scale: &TimeScale) -> String {
    let failed: Vec<&&Sample> = samples.iter().filter(|sample| sample.failed()).collect();
    let mut svg = lane_label(lane, &format!("failed requests: {}", failed.len()), None);
    for sample in failed {
        let x = number(scale.x(sample.at_ms));
        let what = if sample.status == 0 {
            "no answer".to_string()
        } else {
            format!("HTTP {}", sample.status)
        };
        svg.push_str(&format!(
            "<line class=\"failure\" data-at-ms=\"{}\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"><title>{}: {what} after {} ms</title></line>",
            sample.at_ms,
            number(lane.top + 2.0),
            number(lane.bottom() - 2.0),
            moment(sample.at_ms),
            sample.latency_ms
        ));
    }
    svg.push('\n');
    svg
}

/// The p99 latency of each bin, a line through the bins' middles, broken where a bin had no
/// request. The scale is logarithmic, one band per power of ten: a request that timed out after
/// seconds would flatten a linear scale, and hide the 20 ms that became 60 ms at a swap.
fn p99_lane(bins: &[Bin], bin_ms: u64, lane: Lane, scale: &TimeScale) -> String {
    let latencies: Vec<(u64, u64)> = bins.iter().map(|bin| (bin.start_ms, bin.p99())).collect();
    let highest = latencies.iter().map(|(_, p99)| *p99).max().unwrap_or(0);
    let decades = decades(highest);
    let y = |milliseconds: u64| {
        let fraction = (milliseconds.max(1) as f64).log10() / decades as f64;
        lane.bottom() - 2.0 - (lane.height - 4.0) * fraction
    };
    let mut svg = lane_label(lane, "p99 latency", Some("log scale"));
    for decade in 1..=decades {
        let milliseconds = 10u64.pow(decade);
        svg.push_str(&format!(
            "<line class=\"grid\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/><text class=\"lane-scale\" x=\"{}\" y=\"{}\">{}</text>",
            number(PLOT_LEFT),
            number(PLOT_RIGHT),
            number(PLOT_RIGHT + 4.0),
            number(y(milliseconds) + 3.5),
            latency_label(milliseconds),
            y = number(y(milliseconds)),
        ));
    }
    let mut path = String::new();
    let mut previous: Option<u64> = None;
    for (start_ms, p99) in latencies {
        let command = match previous {
            Some(before) if before + bin_ms == start_ms => "L",
            _ => "M",
        };
        let x = scale.x(start_ms) + scale.width(bin_ms) / 2.0;
        path.push_str(&format!("{command}{} {} ", number(x), number(y(p99))));
        previous = Some(start_ms);
    }
    svg.push_str(&format!(
        "<path class=\"p99\" d=\"{}\"><title>p99 latency per bin of {}</title></path>\n",
        path.trim_end(),
        seconds(bin_ms)
    ));
    svg
}

/// How many powers of ten the latency scale spans: from 1 ms to the first one at or above
/// `highest` (at least 100 ms, so a quiet app's 20 ms sits low, not at the top).
fn decades(highest: u64) -> u32 {
    let mut decades = 2;
    while 10u64.saturating_pow(decades) < highest {
        decades += 1;
    }
    decades
}

/// `10 ms`, `1 s`: a latency scale's label.
fn latency_label(milliseconds: u64) -> String {
    if milliseconds >= 1000 {
        format!("{} s", milliseconds / 1000)
    } else {
        format!("{milliseconds} ms")
    }
}

/// Every host's swap as a line across the strip, and above the strip who swapped.
fn strip_swaps(swaps: &[&Swap], lanes: &StripLanes, scale: &TimeScale) -> String {
    let mut sorted: Vec<&Swap> = swaps.to_vec();
    sorted.sort_by(|one, other| (one.done_ms, &one.host).cmp(&(other.done_ms, &other.host)));
    let mut svg = String::new();
    for swap in &sorted {
        let x = number(scale.x(swap.done_ms));
        svg.push_str(&format!(
            "<line class=\"swap\" data-host=\"{}\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"><title>{}</title></line>",
            escape(&swap.host),
            number(lanes.swaps.bottom()),
            number(lanes.p99.bottom()),
            escape(&swap_words(swap)),
        ));
    }
    for label in swap_labels(&sorted, scale) {
        let (anchor, x) = if label.x + 3.0 + label_width(&label.text) <= WIDTH {
            ("start", label.x + 3.0)
        } else {
            ("end", label.x - 3.0)
        };
        svg.push_str(&format!(
            "<text class=\"swap-label\" x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
            number(x),
            number(lanes.swaps.top + 10.0 + SWAP_LABEL_LINE * label.line as f64),
            escape(&label.text)
        ));
    }
    svg.push('\n');
    svg
}

/// The height of a line of swap labels above a strip; there are [`SWAP_LABEL_LINES`].
const SWAP_LABEL_LINE: f64 = 12.0;
const SWAP_LABEL_LINES: usize = 2;

/// Who swapped at one place above a strip.
#[derive(Debug, PartialEq)]
struct SwapLabel {
    x: f64,
    /// `web1 swap`, `web1 + web2 swap`, `5 hosts swap`.
    text: String,
    /// Which line of labels, from the top.
    line: usize,
}

/// How close (pixels) swaps are to share a label: a staged cutover's swaps, one after the
/// other, read as one group (`8 hosts swap`); each host's own is on its row of the timeline.
const SWAP_GROUP_PIXELS: f64 = 30.0;

/// The labels of swaps `sorted` by time: swaps less than [`SWAP_GROUP_PIXELS`] from the one
/// before share one; a label goes on the first line where it overlaps none, and is left out
/// when there is none (every swap's line still has its hover text).
fn swap_labels(sorted: &[&Swap], scale: &TimeScale) -> Vec<SwapLabel> {
    struct Group<'a> {
        first_x: f64,
        last_x: f64,
        hosts: Vec<&'a str>,
    }
    let mut groups: Vec<Group> = Vec::new();
    for swap in sorted {
        let x = scale.x(swap.done_ms);
        match groups.last_mut() {
            Some(group) if x - group.last_x < SWAP_GROUP_PIXELS => {
                group.last_x = x;
                group.hosts.push(&swap.host);
            }
            _ => groups.push(Group {
                first_x: x,
                last_x: x,
                hosts: vec![&swap.host],
            }),
        }
    }
    let mut line_ends = [f64::MIN; SWAP_LABEL_LINES];
    let mut labels = Vec::new();
    for Group {
        first_x: x, hosts, ..
    } in groups
    {
        let text = match hosts.as_slice() {
            [one] => format!("{one} swap"),
            [one, other] => format!("{one} + {other} swap"),
            many => format!("{} hosts swap", many.len()),
        };
        if let Some(line) = line_ends.iter().position(|end| *end < x) {
            line_ends[line] = x + 3.0 + label_width(&text) + 6.0;
            labels.push(SwapLabel { x, text, line });
        }
    }
    labels
}

/// The legend of the strips.
fn watch_legend() -> String {
    let y = 18.0;
    let mut svg = svg_open(
        "legend",
        LEGEND_HEIGHT,
        "legend of the watcher's strips",
        "",
    );
    let mut x = PLOT_LEFT;
    for (class, words, advance) in [
        ("served-new", "new release", 110.0),
        ("served-old", "old release", 110.0),
        ("served-unknown", "release not named", 140.0),
        ("rate", "requests / s", 112.0),
    ] {
        svg.push_str(&legend_swatch(x, y, class));
        svg.push_str(&legend_text(x + 24.0, y, words));
        x += advance;
    }
    svg.push_str(&legend_line(x, y, "failure"));
    svg.push_str(&legend_text(x + 14.0, y, "failed request"));
    x += 118.0;
    svg.push_str(&format!(
        "<path class=\"legend-swatch p99\" d=\"M{} {} L{} {} L{} {}\"/>",
        number(x),
        number(y - 3.0),
        number(x + 8.0),
        number(y - 9.0),
        number(x + 18.0),
        number(y - 5.0)
    ));
    svg.push_str(&legend_text(x + 24.0, y, "p99 latency"));
    x += 104.0;
    svg.push_str(&legend_line(x, y, "swap"));
    svg.push_str(&legend_text(x + 14.0, y, "swap"));
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::watch::{summarize, Watched};

    fn task(name: &str, start_ms: u64, duration_ms: u64, outcome: &str) -> TaskTiming {
        TaskTiming {
            task: name.into(),
            start_ms,
            duration_ms,
            outcome: outcome.into(),
        }
    }

    fn swap(host: &str, sent_ms: u64, done_ms: u64) -> Swap {
        Swap {
            host: host.into(),
            sent_ms,
            done_ms,
        }
    }

    /// Which release the load balancer's answer at `at_ms` comes from: old before web1's
    /// swap, either one between the swaps, new after web2's.
    fn served_at(at_ms: u64, index: u64) -> Served {
        if at_ms < 6_010 {
            Served::Old
        } else if at_ms < 9_020 {
            if index % 2 == 0 {
                Served::New
            } else {
                Served::Old
            }
        } else {
            Served::New
        }
    }

    /// The watcher's requests: the load balancer (URL 0) and web1's own URL (URL 1), every
    /// 200 ms; three failures around the swaps.
    fn samples() -> Vec<Sample> {
        let mut samples = Vec::new();
        for index in 0..75u64 {
            let at_ms = 100 + index * 200;
            let latency_ms = 18
                + (index * 7) % 13
                + if (6_000..7_000).contains(&at_ms) {
                    40
                } else {
                    0
                };
            let (status, served) = match at_ms {
                6_100 | 6_300 => (502, Served::Unknown),
                9_100 => (0, Served::Unknown),
                _ => (200, served_at(at_ms, index)),
            };
            samples.push(Sample {
                url: 0,
                at_ms,
                status,
                latency_ms: if status == 0 { 2_000 } else { latency_ms },
                served,
            });
            samples.push(Sample {
                url: 1,
                at_ms: at_ms + 50,
                status: 200,
                latency_ms: 12 + (index * 5) % 7,
                served: if at_ms + 50 < 6_010 {
                    Served::Old
                } else {
                    Served::New
                },
            });
        }
        samples
    }

    /// Two hosts in a staged cutover: web1 finished, web2 swapped then failed its last task.
    fn report() -> Report {
        let swaps = vec![swap("web1", 6_000, 6_010), swap("web2", 9_000, 9_020)];
        let samples = samples();
        let watched = [
            Watched {
                url: "https://shop.example/health".into(),
                hosts: vec!["web1".into(), "web2".into()],
            },
            Watched {
                url: "http://web1.internal/health".into(),
                hosts: vec!["web1".into()],
            },
        ];
        let errors = [(0, 9_100, "connection refused".to_string())];
        let watch = summarize(&watched, &samples, &swaps, &errors, 5.0, (0, 15_000));
        let tasks = |failed_last: bool| {
            vec![
                task("deploy:lock", 0, 120, "ok"),
                task("deploy:release", 120, 80, "ok"),
                task("deploy:update_code", 200, 2_400, "ok"),
                task("deploy:shared", 2_600, 0, "ok"),
                task("deploy:vendors", 2_600, 2_900, "ok"),
                task("artisan:migrate", 5_500, 400, "ok"),
                task("deploy:symlink", 5_900, 150, "ok"),
                task(
                    "artisan:queue:restart",
                    12_000,
                    900,
                    if failed_last { "failed" } else { "ok" },
                ),
            ]
        };
        let mut web2_tasks = tasks(true);
        web2_tasks[6] = task("deploy:symlink", 8_950, 100, "ok");
        Report {
            release: "20250301.3".into(),
            commit: Some("4f2a9c1d7e88b0c3a1f5e6d7c8b9a0f1e2d3c4b5".into()),
            started: "2025-03-01T10:15:00Z".into(),
            duration_ms: 12_900,
            hosts: vec![
                HostRow {
                    host: "web1".into(),
                    outcome: "finished".into(),
                    tasks: tasks(false),
                    swap: Some(swaps[0].clone()),
                    message: None,
                },
                HostRow {
                    host: "web2".into(),
                    outcome: "failed".into(),
                    tasks: web2_tasks,
                    swap: Some(swaps[1].clone()),
                    message: Some("artisan queue:restart: exit status 1".into()),
                },
            ],
            watch: Some(watch),
            urls: watched.iter().map(|url| url.url.clone()).collect(),
            samples,
        }
    }

    fn count(page: &str, needle: &str) -> usize {
        page.matches(needle).count()
    }

    #[test]
    fn one_group_per_host_and_one_bar_per_task() {
        let report = report();
        let page = render(&report);
        assert_eq!(count(&page, "<g class=\"host\""), 2);
        assert!(page.contains("<g class=\"host\" data-host=\"web1\" data-outcome=\"finished\">"));
        assert!(page.contains("<g class=\"host\" data-host=\"web2\" data-outcome=\"failed\">"));
        assert_eq!(count(&page, "<rect class=\"task "), 16);
        assert_eq!(count(&page, "<rect class=\"task failed\""), 1);
        assert!(page.contains(
            "<rect class=\"task ok\" data-task=\"deploy:vendors\" data-start-ms=\"2600\" data-duration-ms=\"2900\""
        ));
        assert!(page.contains("<title>deploy:vendors on web1: 2.90 s</title>"));
        assert!(page.contains("✗ failed: artisan:queue:restart"));
    }

    #[test]
    fn a_task_of_no_time_is_still_a_pixel_wide() {
        let page = render(&report());
        let start = page
            .find("data-task=\"deploy:shared\" data-start-ms=\"2600\" data-duration-ms=\"0\"")
            .unwrap();
        assert!(page[start..]
            .split('>')
            .next()
            .unwrap()
            .contains(" width=\"1\" "));
    }

    #[test]
    fn each_swap_is_marked_on_its_row_and_across_every_strip() {
        let page = render(&report());
        assert_eq!(count(&page, "<g class=\"swap\""), 2);
        assert!(page.contains("<g class=\"swap\" data-host=\"web1\" data-done-ms=\"6010\">"));
        assert!(page.contains("<g class=\"swap\" data-host=\"web2\" data-done-ms=\"9020\">"));
        assert_eq!(count(&page, "<line class=\"swap\""), 4);
        assert_eq!(count(&page, ">swap</text></g>"), 2);
    }

    #[test]
    fn one_strip_per_url_with_a_tick_per_failed_request() {
        let report = report();
        let page = render(&report);
        assert_eq!(count(&page, "<svg class=\"strip\""), 2);
        assert!(page.contains("data-url=\"https://shop.example/health\" data-bin-ms=\"1000\""));
        let failed = report
            .samples
            .iter()
            .filter(|sample| sample.failed())
            .count();
        assert_eq!(failed, 3);
        assert_eq!(count(&page, "<line class=\"failure\""), failed);
        assert_eq!(count(&page, "<path class=\"p99\""), 2);
        assert!(page.contains("class=\"served-old\""));
        assert!(page.contains("class=\"served-new\""));
        for url in &report.watch.as_ref().unwrap().urls {
            assert!(page.contains(&escape(&url.line())));
        }
    }

    #[test]
    fn every_request_of_a_bin_is_counted_once() {
        let report = report();
        let page = render(&report);
        let counted: u64 = page
            .split("<rect class=\"rate\"")
            .skip(1)
            .map(|bar| {
                let value = bar.split("data-requests=\"").nth(1).unwrap();
                value.split('"').next().unwrap().parse::<u64>().unwrap()
            })
            .sum();
        assert_eq!(counted, report.samples.len() as u64);
    }

    #[test]
    fn the_header_says_what_how_long_and_how_each_host_ended() {
        let page = render(&report());
        assert!(page.contains("<dd>20250301.3</dd>"));
        assert!(page.contains("<dd>4f2a9c1d7e88</dd>"));
        assert!(page.contains("<dd>2025-03-01T10:15:00Z</dd>"));
        assert!(page.contains("<dd>12.90 s</dd>"));
        assert!(page.contains("✓ finished"));
        assert!(page.contains("artisan queue:restart: exit status 1"));
    }

    #[test]
    fn data_is_escaped_and_nothing_runs_or_loads() {
        let mut report = report();
        let hostile = "<script>alert(1)</script>";
        report.hosts[0].host = hostile.into();
        let hostile_task = "\"><img src=x onerror=alert(1)>";
        report.hosts[0].tasks[0].task = hostile_task.into();
        report.hosts[1].message = Some("it's <b>bold</b> & broken".into());
        report.release = "<script>".into();
        let page = render(&report);
        assert!(page.contains("data-host=\"&lt;script&gt;alert(1)&lt;/script&gt;\""));
        assert!(page.contains("it&#39;s &lt;b&gt;bold&lt;/b&gt; &amp; broken"));
        assert!(!page.to_lowercase().contains("<script"));
        assert!(!page.contains("<img"));
        let outside_data = page.replace(&escape(hostile_task), "");
        assert!(!outside_data.contains("src="));
        assert!(!outside_data.contains("href="));
        assert!(!page.contains("@import"));
        // The only URLs are the watched ones, as text and attributes.
        let urls = ["https://shop.example/health", "http://web1.internal/health"];
        let mut without = page.clone();
        for url in urls {
            without = without.replace(url, "");
        }
        assert!(!without.contains("http://"));
        assert!(!without.contains("https://"));
    }

    #[test]
    fn a_report_without_watch_has_no_strip() {
        let mut report = report();
        report.watch = None;
        report.urls.clear();
        report.samples.clear();
        let page = render(&report);
        assert!(!page.contains("class=\"strip\""));
        assert!(!page.contains("class=\"failure\""));
        assert!(!page.contains("<section class=\"watch\""));
        assert!(page.contains("Not watched"));
        assert_eq!(count(&page, "<svg"), 1);
    }

    #[test]
    fn elements_open_and_close_in_pairs() {
        let page = render(&report());
        for element in [
            "svg", "g", "section", "header", "text", "title", "table", "ul", "dl",
        ] {
            assert_eq!(
                count(&page, &format!("<{element} ")) + count(&page, &format!("<{element}>")),
                count(&page, &format!("</{element}>")),
                "<{element}>"
            );
        }
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.ends_with("</html>\n"));
    }

    #[test]
    fn the_same_report_gives_the_same_page() {
        assert_eq!(render(&report()), render(&report()));
    }

    #[test]
    fn an_empty_report_still_draws() {
        let report = Report {
            release: "1".into(),
            commit: None,
            started: "2025-03-01T10:15:00Z".into(),
            duration_ms: 0,
            hosts: vec![],
            watch: None,
            urls: vec![],
            samples: vec![],
        };
        let page = render(&report);
        assert!(page.contains("<svg class=\"timeline\""));
        assert!(!page.contains("NaN"));
        assert!(!page.contains("inf"));
    }

    #[test]
    fn ticks_are_round_seconds() {
        assert_eq!(tick_step(12_900), 2_000);
        assert_eq!(tick_step(900), 100);
        assert_eq!(tick_step(100 * 60_000), 600_000);
        assert_eq!(tick_label(2_000), "2 s");
        assert_eq!(tick_label(250), "0.25 s");
        assert_eq!(bin_width(5.0, 14_000), 1_000);
        assert_eq!(bin_width(20.0, 14_000), 250);
        assert_eq!(bin_width(5.0, 600_000), 5_000);
    }

    #[test]
    fn swaps_close_together_share_a_label_and_others_take_turns() {
        let scale = TimeScale {
            end_ms: 100_000,
            tick_ms: 10_000,
        };
        let swaps = [
            swap("web1", 0, 10_000),
            swap("web2", 0, 10_050),
            swap("web3", 0, 14_000),
            swap("web4", 0, 14_100),
            swap("web5", 0, 14_200),
            swap("web6", 0, 50_000),
        ];
        let sorted: Vec<&Swap> = swaps.iter().collect();
        let labels: Vec<(String, usize)> = swap_labels(&sorted, &scale)
            .into_iter()
            .map(|label| (label.text, label.line))
            .collect();
        assert_eq!(
            labels,
            [
                ("web1 + web2 swap".to_string(), 0),
                ("3 hosts swap".to_string(), 1),
                ("web6 swap".to_string(), 0),
            ]
        );
    }

    #[test]
    fn the_verdict_names_the_hosts_that_failed() {
        let report = report();
        assert_eq!(
            verdict(&report.hosts),
            "<p class=\"verdict outcome-failed\">✗ failed on web2 (1 of 2 hosts)</p>\n"
        );
        assert!(verdict(&report.hosts[..1]).contains("✓ finished on web1<"));
    }

    #[test]
    fn a_long_host_name_is_cut_in_the_timeline_only() {
        let mut report = report();
        report.hosts[0].host = "app-server-00.eu-west.example.com".into();
        let page = render(&report);
        assert!(page.contains(">app-server-00.eu-west…</text>"));
        assert!(page.contains("data-host=\"app-server-00.eu-west.example.com\""));
        assert!(page.contains("<td class=\"host-name\">app-server-00.eu-west.example.com</td>"));
    }

    #[test]
    fn escape_covers_the_five_characters() {
        assert_eq!(escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
    }

    /// Writes the sample page for a look in a browser (`-- --ignored`).
    #[test]
    #[ignore]
    fn write_sample_page() {
        std::fs::write("/tmp/sample-report.html", render(&report())).unwrap();
    }
}
