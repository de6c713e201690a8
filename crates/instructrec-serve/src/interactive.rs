//! The terminal front end of `instructrec recommend`: reads lines from any `BufRead`, writes
//! answers to any `Write`, so a test can script a whole conversation.
//!
//! `:user ID` picks a user, `:none` drops it, `:new` forgets the last answer, `:quit` ends. A
//! plain line is an instruction; once there is an answer, a plain line (or one starting with
//! `+`) refines it as a follow-up.

use std::io::{BufRead, Write};

use crate::recommender::Recommender;
use crate::request::{RecommendRequest, Response, UserRef};

const HELP: &str = "Type what you want. Commands: :user ID, :none, :new, :help, :quit. \
After an answer, a line refines it (start it with + to be explicit); :new starts over.";

/// Writes one answer as a table: rank, score, title, categories.
pub fn write_response(out: &mut dyn Write, r: &Response) -> std::io::Result<()> {
    writeln!(
        out,
        "template {} ({}), {} candidates scored{}, {:.0} ms{}",
        r.template,
        r.scenario,
        r.scored,
        r.matcher
            .as_ref()
            .map(|m| format!(" ({} from {m})", r.matched))
            .unwrap_or_default(),
        r.timings.total_ms,
        if r.refined { ", refined" } else { "" }
    )?;
    // As on the page: the share of the model's preference, not a log-likelihood, and the why.
    for item in &r.items {
        writeln!(
            out,
            "{:>3}. {:>5.1}%  {}  [{}]\n       {}",
            item.rank,
            100.0 * item.relevance,
            item.title,
            item.categories.join(" > "),
            item.why.summary
        )?;
    }
    Ok(())
}

/// Runs the loop until `:quit` or the end of the input. Refused requests are reported and the
/// loop goes on; only I/O failures end it with an error.
pub fn run(
    rec: &Recommender,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    user: Option<UserRef>,
    k: usize,
) -> std::io::Result<()> {
    let mut user = user;
    let mut session: Option<String> = None;
    writeln!(out, "{HELP}")?;
    loop {
        write!(
            out,
            "{}> ",
            if session.is_some() { "refine" } else { "ask" }
        )?;
        out.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            writeln!(out)?;
            return Ok(());
        }
        let line = line.trim();
        match line.split_once(' ').unwrap_or((line, "")) {
            ("", _) => continue,
            (":quit" | ":q", _) => return Ok(()),
            (":help", _) => writeln!(out, "{HELP}")?,
            (":none", _) => {
                user = None;
                session = None;
                writeln!(out, "no user: answers use only what you type")?;
            }
            (":new", _) => {
                session = None;
                writeln!(out, "starting over")?;
            }
            (":user", id) if !id.trim().is_empty() => {
                let id = id.trim();
                match rec.user_by_original(id) {
                    Some(u) => {
                        user = Some(UserRef::Name(id.to_string()));
                        session = None;
                        let history = rec.user_history(u);
                        writeln!(out, "user {id}: {} items; the most recent:", history.len())?;
                        for i in history.iter().rev().take(5) {
                            writeln!(out, "  - {}", rec.item(*i).title)?;
                        }
                    }
                    None => writeln!(out, "error: no user `{id}`")?,
                }
            }
            (c, _) if c.starts_with(':') => writeln!(out, "error: unknown command `{c}`; {HELP}")?,
            _ => {
                let (refine, text) = match line.strip_prefix('+') {
                    Some(t) => (true, t.trim()),
                    None => (session.is_some(), line),
                };
                if refine && session.is_none() {
                    writeln!(out, "error: nothing to refine yet; ask first")?;
                    continue;
                }
                let req = RecommendRequest {
                    user: if refine { None } else { user.clone() },
                    intention: Some(text.to_string()),
                    k: Some(k),
                    session: if refine { session.clone() } else { None },
                    refine,
                    ..RecommendRequest::default()
                };
                match rec.recommend(&req) {
                    Ok(r) => {
                        session = Some(r.session.clone());
                        write_response(out, &r)?;
                    }
                    Err(e) => writeln!(out, "error: {e}")?,
                }
            }
        }
    }
}
