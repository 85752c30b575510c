//! Kernel splats in a console transcript or a dmesg dump: WARN, BUG/Oops,
//! KASAN, UBSAN, lockdep, hung tasks, RCU stalls, soft and hard lockups,
//! kmemleak reports and panics. Each comes with its first lines, a title in
//! syzbot's style ("WARNING in func") and a fingerprint made of its kind and
//! top call-trace frames (offsets and compiler suffixes stripped), so that
//! the same bug gives the same fingerprint from run to run.

mod patterns;
#[cfg(test)]
pub(crate) mod tests;

use patterns::Start;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SplatKind {
    Warning,
    Bug,
    Kasan,
    Ubsan,
    Lockdep,
    HungTask,
    RcuStall,
    SoftLockup,
    Kmemleak,
    Panic,
}

impl SplatKind {
    pub fn name(self) -> &'static str {
        match self {
            SplatKind::Warning => "warning",
            SplatKind::Bug => "bug",
            SplatKind::Kasan => "kasan",
            SplatKind::Ubsan => "ubsan",
            SplatKind::Lockdep => "lockdep",
            SplatKind::HungTask => "hung_task",
            SplatKind::RcuStall => "rcu_stall",
            SplatKind::SoftLockup => "soft_lockup",
            SplatKind::Kmemleak => "kmemleak",
            SplatKind::Panic => "panic",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Splat {
    pub kind: SplatKind,
    pub title: String,
    pub fingerprint: String,
    /// Top frames, offsets and `.isra.0`-style suffixes stripped.
    pub frames: Vec<String>,
    /// The report's first lines, printk prefix stripped.
    pub lines: Vec<String>,
    /// 1-based line of the input where the report starts.
    pub line: usize,
    /// The kernel's timestamp of that line (seconds since boot), if printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<f64>,
    /// How many times the same (kind, fingerprint) was reported.
    pub count: usize,
    /// Matched one of the case's `ignore_splats` patterns.
    pub ignored: bool,
}

/// Lines kept per splat for the report.
const SHOWN_LINES: usize = 12;
/// A report ends at its end marker, at the next report, or after this many
/// lines (lockdep's chains run longer).
const MAX_LINES: usize = 80;
const MAX_LINES_LOCKDEP: usize = 200;
/// Frames in the fingerprint.
const FINGERPRINT_FRAMES: usize = 3;

struct Open {
    kind: Option<SplatKind>,
    start: usize,
    time: Option<f64>,
    msgs: Vec<String>,
}

/// Every splat in `text`, in order; repeats of one (kind, fingerprint)
/// are folded into its first report's `count`.
pub fn detect(text: &str) -> Vec<Splat> {
    let mut done: Vec<Splat> = Vec::new();
    let mut open: Option<Open> = None;
    for (i, raw) in text.lines().enumerate() {
        let msg = crate::logline::message(raw);
        let start = patterns::classify(msg);
        if let Some(o) = open.as_mut() {
            let within_oops = o.msgs.len() < 12
                && matches!(
                    o.kind,
                    None | Some(SplatKind::Bug) | Some(SplatKind::Warning)
                );
            match &start {
                // A cut-here line is followed by what it announces.
                Some(Start::Report(k)) if o.kind.is_none() => {
                    o.kind = Some(*k);
                    o.msgs.push(msg.to_string());
                    continue;
                }
                Some(Start::OopsLine) if within_oops => {
                    o.kind.get_or_insert(SplatKind::Bug);
                    o.msgs.push(msg.to_string());
                    continue;
                }
                // kmemleak lists one object after another under its summary.
                Some(Start::Report(SplatKind::Kmemleak))
                    if o.kind == Some(SplatKind::Kmemleak)
                        && msg.trim_start().starts_with("unreferenced object") =>
                {
                    if o.msgs
                        .iter()
                        .any(|m| m.trim_start().starts_with("unreferenced object"))
                    {
                        finish(open.take(), &mut done);
                        open = Some(Open::new(i, raw, msg, Some(SplatKind::Kmemleak)));
                    } else {
                        o.msgs.push(msg.to_string());
                    }
                    continue;
                }
                Some(_) => {
                    finish(open.take(), &mut done);
                }
                None => {
                    o.msgs.push(msg.to_string());
                    let rule = patterns::is_rule(msg);
                    let framed = matches!(o.kind, Some(SplatKind::Kasan | SplatKind::Ubsan));
                    let limit = if o.kind == Some(SplatKind::Lockdep) {
                        MAX_LINES_LOCKDEP
                    } else {
                        MAX_LINES
                    };
                    // One task's stack ends these reports.
                    let one_stack = matches!(
                        o.kind,
                        Some(SplatKind::HungTask | SplatKind::RcuStall | SplatKind::SoftLockup)
                    ) && msg.trim() == "</TASK>";
                    if patterns::is_end(msg)
                        || (framed && rule)
                        || one_stack
                        || o.msgs.len() >= limit
                    {
                        finish(open.take(), &mut done);
                    }
                    continue;
                }
            }
        }
        match start {
            Some(Start::CutHere) => open = Some(Open::new(i, raw, msg, None)),
            Some(Start::Report(k)) => open = Some(Open::new(i, raw, msg, Some(k))),
            Some(Start::OopsLine) => open = Some(Open::new(i, raw, msg, Some(SplatKind::Bug))),
            None => {}
        }
    }
    finish(open, &mut done);
    fold_frameless(done)
}

/// The line that says what a report is (not the cut-here line).
fn head(s: &Splat) -> &str {
    s.lines
        .iter()
        .map(|l| l.trim())
        .find(|l| !l.starts_with("------------[ cut here"))
        .unwrap_or("")
}

/// A report seen without its call trace (the console shows only the lines
/// at or above its loglevel; live lines can break into a dump) is the same
/// report as one of the same kind and head line with a trace: count it
/// there.
fn fold_frameless(mut splats: Vec<Splat>) -> Vec<Splat> {
    let same = |a: &Splat, b: &Splat| a.kind == b.kind && normalize(head(a)) == normalize(head(b));
    let pairs: Vec<(usize, usize)> = (0..splats.len())
        .filter(|&i| splats[i].frames.is_empty())
        .filter_map(|i| {
            (0..splats.len())
                .find(|&j| !splats[j].frames.is_empty() && same(&splats[j], &splats[i]))
                .map(|j| (i, j))
        })
        .collect();
    for &(from, into) in &pairs {
        let (count, time) = (splats[from].count, splats[from].time);
        let g = &mut splats[into];
        g.count += count;
        g.time = match (g.time, time) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let gone: Vec<usize> = pairs.iter().map(|&(from, _)| from).collect();
    splats
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !gone.contains(i))
        .map(|(_, s)| s)
        .collect()
}

impl Open {
    fn new(i: usize, raw: &str, msg: &str, kind: Option<SplatKind>) -> Open {
        Open {
            kind,
            start: i + 1,
            time: crate::logline::timestamp(raw),
            msgs: vec![msg.to_string()],
        }
    }
}

fn finish(open: Option<Open>, done: &mut Vec<Splat>) {
    let Some(o) = open else { return };
    // A cut-here line followed by nothing known: a warning all the same.
    let kind = o.kind.unwrap_or(SplatKind::Warning);
    let frames = top_frames(kind, &o.msgs);
    let title = title(kind, &o.msgs, &frames);
    let fingerprint = if frames.is_empty() {
        format!("{}|{}", kind.name(), normalize(&title))
    } else {
        let top: Vec<&str> = frames
            .iter()
            .take(FINGERPRINT_FRAMES)
            .map(String::as_str)
            .collect();
        format!("{}|{}", kind.name(), top.join("|"))
    };
    if let Some(prev) = done
        .iter_mut()
        .find(|s| s.kind == kind && s.fingerprint == fingerprint)
    {
        prev.count += 1;
        return;
    }
    done.push(Splat {
        kind,
        title,
        fingerprint,
        frames,
        lines: o.msgs.iter().take(SHOWN_LINES).cloned().collect(),
        line: o.start,
        time: o.time,
        count: 1,
        ignored: false,
    });
}

/// `func.isra.0` -> `func`.
fn base_name(f: &str) -> String {
    f.split('.').next().unwrap_or(f).to_string()
}

fn top_frames(kind: SplatKind, msgs: &[String]) -> Vec<String> {
    let mut frames: Vec<String> = Vec::new();
    let push = |f: &str, frames: &mut Vec<String>| {
        let b = base_name(f);
        if !patterns::is_boring_frame(&b) && !frames.contains(&b) {
            frames.push(b);
        }
    };
    if kind == SplatKind::Lockdep {
        // The sites lockdep names for the locks involved come first.
        for m in msgs {
            if let Some(f) = patterns::lockdep_site(m) {
                push(f, &mut frames);
            }
        }
        if !frames.is_empty() {
            return frames.into_iter().take(5).collect();
        }
    }
    // The faulting function of WARN/BUG/soft lockup, then the trace. A WARN
    // names it in its first line too ("at file:line func+0x1/0x2").
    let rip = msgs.iter().find_map(|m| patterns::rip_function(m));
    let warned = (kind == SplatKind::Warning)
        .then(|| {
            msgs.iter().find_map(|m| {
                m.starts_with("WARNING: ")
                    .then(|| patterns::named_function(m))
                    .flatten()
            })
        })
        .flatten();
    if let Some(f) = rip.or(warned) {
        push(f, &mut frames);
    }
    // Only the first trace: a report may be followed by other tasks' stacks.
    let mut in_trace = false;
    let mut seen_frame = false;
    for m in msgs {
        let t = m.trim_start();
        if t.starts_with("Call Trace:")
            || t.starts_with("Call trace:")
            || t.starts_with("backtrace:")
        {
            if seen_frame {
                break;
            }
            in_trace = true;
            continue;
        }
        if !in_trace {
            continue;
        }
        match patterns::frame(m) {
            Some((f, reliable)) => {
                seen_frame = true;
                if reliable {
                    push(f, &mut frames);
                }
            }
            None if t.starts_with('<') => {} // <TASK>, </IRQ>...
            None if seen_frame => break,
            None => {}
        }
        if frames.len() >= 5 {
            break;
        }
    }
    frames
}

fn first_word_after<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = s.trim_start().strip_prefix(prefix)?;
    rest.split_whitespace().next()
}

fn title(kind: SplatKind, msgs: &[String], frames: &[String]) -> String {
    let head = msgs
        .iter()
        .map(|m| m.trim())
        .find(|m| !m.starts_with("------------[ cut here"))
        .unwrap_or("");
    let top = frames.first().map(String::as_str);
    let named = patterns::named_function(head).map(base_name);
    let place = named.as_deref().or(top);
    let with = |what: &str| match place {
        Some(f) => format!("{what} in {f}"),
        None => what.to_string(),
    };
    match kind {
        SplatKind::Warning => with("WARNING"),
        SplatKind::Bug => {
            let what = if head.starts_with("kernel BUG at") {
                "kernel BUG".to_string()
            } else if let Some(r) = head.strip_prefix("BUG: ") {
                // "BUG: unable to handle page fault for address: ..." -> up to ':' or ','
                let r = r.split([':', ',']).next().unwrap_or(r);
                let r = r.split(" at ").next().unwrap_or(r).trim();
                format!("BUG: {}", r.trim_end_matches(" at"))
            } else {
                head.split([':', ','])
                    .next()
                    .unwrap_or(head)
                    .trim()
                    .to_string()
            };
            match top.or(named.as_deref()) {
                Some(f) => format!("{what} in {f}"),
                None => what,
            }
        }
        SplatKind::Kasan => {
            let tool = if head.contains("KFENCE") {
                "KFENCE"
            } else {
                "KASAN"
            };
            let bug = head
                .split_once(": ")
                .and_then(|(_, r)| r.split_once(": "))
                .map(|(_, r)| r.split(" in ").next().unwrap_or(r).trim())
                .unwrap_or("");
            let access = msgs
                .iter()
                .find_map(|m| first_word_after(m, "").filter(|w| *w == "Read" || *w == "Write"))
                .map(|w| format!(" {w}"))
                .unwrap_or_default();
            with(&format!("{tool}: {bug}{access}"))
        }
        SplatKind::Ubsan => {
            let bug = head
                .strip_prefix("UBSAN: ")
                .and_then(|r| r.split(" in ").next())
                .unwrap_or("undefined behaviour")
                .trim();
            match top {
                Some(f) => format!("UBSAN: {bug} in {f}"),
                None => {
                    // "in drivers/x.c:12:34" -> the file without line and column.
                    let file = head
                        .split(" in ")
                        .nth(1)
                        .map(|f| f.split(':').next().unwrap_or(f).trim());
                    match file {
                        Some(f) => format!("UBSAN: {bug} in {f}"),
                        None => format!("UBSAN: {bug}"),
                    }
                }
            }
        }
        SplatKind::Lockdep => {
            let what = head
                .trim_start_matches("[ ")
                .split_once(": ")
                .map(|(_, r)| r.trim_end_matches([' ', ']', '!']))
                .unwrap_or(head);
            format!("lockdep: {what}")
        }
        SplatKind::HungTask => match top {
            Some(f) => format!("INFO: task hung in {f}"),
            // "INFO: task kworker/0:1:123 blocked ..." -> the command, pid dropped.
            None => match head
                .strip_prefix("INFO: task ")
                .and_then(|r| r.split(" blocked").next())
                .and_then(|t| t.rsplit_once(':'))
            {
                Some((comm, _pid)) => format!("INFO: task hung ({})", normalize(comm)),
                None => "INFO: task hung".into(),
            },
        },
        SplatKind::RcuStall => match top {
            Some(f) => format!("INFO: rcu detected stall in {f}"),
            None => "INFO: rcu detected stall".into(),
        },
        SplatKind::SoftLockup => {
            let what = if head.contains("hard LOCKUP") {
                "watchdog: hard LOCKUP"
            } else if head.contains("workqueue lockup") {
                "BUG: workqueue lockup"
            } else {
                "BUG: soft lockup"
            };
            match top {
                Some(f) => format!("{what} in {f}"),
                None => what.into(),
            }
        }
        SplatKind::Kmemleak => match top {
            Some(f) => format!("memory leak in {f}"),
            None => "kmemleak: suspected memory leaks".into(),
        },
        SplatKind::Panic => {
            let why = head
                .strip_prefix("Kernel panic - not syncing")
                .unwrap_or("");
            format!("Kernel panic - not syncing{}", normalize(why.trim_end()))
        }
    }
}

/// Numbers and addresses vary from run to run; fingerprints must not.
fn normalize(s: &str) -> String {
    use std::sync::LazyLock;
    static HEX: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"0x[0-9a-fA-F]+|\b[0-9a-f]{8,}\b").unwrap());
    static NUM: LazyLock<regex::Regex> = LazyLock::new(|| regex::Regex::new(r"\d+").unwrap());
    NUM.replace_all(&HEX.replace_all(s, "ADDR"), "N")
        .into_owned()
}

/// Marks the splats that match any of `patterns` (title, fingerprint or
/// any of its lines) as ignored.
pub fn apply_ignores(splats: &mut [Splat], patterns: &[regex::Regex]) {
    for s in splats {
        s.ignored = patterns.iter().any(|p| {
            p.is_match(&s.title)
                || p.is_match(&s.fingerprint)
                || s.lines.iter().any(|l| p.is_match(l))
        });
    }
}

/// The splats of one guest run: from the dmesg dump when there is a
/// complete one (it has the lines printed below the console loglevel, e.g.
/// a WARN's call trace under `quiet`), plus those on the console from
/// before the dump's first line (gone from the ring buffer); from the
/// console alone otherwise.
pub fn merge(console: Vec<Splat>, dmesg: Option<(Vec<Splat>, Option<f64>)>) -> Vec<Splat> {
    let Some((mut from_dmesg, first_time)) = dmesg else {
        return console;
    };
    for c in console {
        let older = match (c.time, first_time) {
            (Some(t), Some(first)) => t < first,
            _ => !from_dmesg.iter().any(|d| d.kind == c.kind),
        };
        if older {
            from_dmesg.push(c);
        }
    }
    fold_frameless(from_dmesg)
}
