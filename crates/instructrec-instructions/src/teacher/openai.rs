//! A teacher that asks an OpenAI-compatible chat-completions service, as the paper asked
//! GPT-3.5. Every answer is cached on disk under the hash of the exact request, written
//! atomically as soon as it arrives: an interrupted run resumes where it stopped, and a rerun
//! replays the same fills without a single request. Answers that name the target item are
//! replaced by the offline teacher's fill and counted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use instructrec_data::atomic::write_atomic;
use instructrec_data::{Dataset, Item, ItemId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Fill, FillRequest, Filled, OfflineTeacher, Teacher, TeacherError, TeacherReport};
use crate::text::mentions_title;

const SYSTEM_PROMPT: &str = include_str!("../../prompts/system.txt");
const PREFERENCE_PROMPT: &str = include_str!("../../prompts/preference.txt");
const INTENTION_PROMPT: &str = include_str!("../../prompts/intention.txt");
/// Feature sentences shown per item in a prompt: enough to describe it, short enough to be cheap.
const PROMPT_FEATURES: usize = 4;
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Up to and including the version, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub model: String,
    /// Better given as `OPENAI_API_KEY` than written into a file.
    #[serde(default, skip_serializing)]
    pub api_key: Option<String>,
    #[serde(default = "defaults::concurrency")]
    pub concurrency: usize,
    #[serde(default = "defaults::max_retries")]
    pub max_retries: u32,
    /// First wait after a failed attempt; doubled on every further failure.
    #[serde(default = "defaults::backoff_ms")]
    pub backoff_ms: u64,
    #[serde(default = "defaults::timeout_s")]
    pub timeout_s: u64,
    #[serde(default = "defaults::temperature")]
    pub temperature: f32,
    #[serde(default = "defaults::max_tokens")]
    pub max_tokens: u32,
    pub cache_dir: PathBuf,
}

mod defaults {
    pub fn concurrency() -> usize {
        8
    }
    pub fn max_retries() -> u32 {
        6
    }
    pub fn backoff_ms() -> u64 {
        500
    }
    pub fn timeout_s() -> u64 {
        60
    }
    pub fn temperature() -> f32 {
        0.7
    }
    pub fn max_tokens() -> u32 {
        120
    }
}

impl OpenAiConfig {
    /// From `OPENAI_BASE_URL` (default the OpenAI endpoint), `INSTRUCTREC_TEACHER_MODEL` and
    /// `OPENAI_API_KEY`.
    pub fn from_env(cache_dir: PathBuf) -> Result<Self, TeacherError> {
        let model = std::env::var("INSTRUCTREC_TEACHER_MODEL").map_err(|_| {
            TeacherError::Config(
                "set INSTRUCTREC_TEACHER_MODEL (or give a teacher config file)".into(),
            )
        })?;
        Ok(Self {
            base_url: std::env::var("OPENAI_BASE_URL")
                .unwrap_or_else(|_| "https://api.openai.com/v1".into()),
            model,
            api_key: std::env::var("OPENAI_API_KEY").ok(),
            concurrency: defaults::concurrency(),
            max_retries: defaults::max_retries(),
            backoff_ms: defaults::backoff_ms(),
            timeout_s: defaults::timeout_s(),
            temperature: defaults::temperature(),
            max_tokens: defaults::max_tokens(),
            cache_dir,
        })
    }

    /// A TOML file with the fields of this struct; a missing `api_key` comes from
    /// `OPENAI_API_KEY`. A relative `cache_dir` is taken relative to the file.
    pub fn from_file(path: &Path) -> Result<Self, TeacherError> {
        let text = std::fs::read_to_string(path).map_err(|source| TeacherError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Self = toml::from_str(&text)
            .map_err(|e| TeacherError::Config(format!("{}: {e}", path.display())))?;
        if config.api_key.is_none() {
            config.api_key = std::env::var("OPENAI_API_KEY").ok();
        }
        if config.cache_dir.is_relative() {
            if let Some(parent) = path.parent() {
                config.cache_dir = parent.join(&config.cache_dir);
            }
        }
        Ok(config)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Message {
    role: String,
    content: String,
}

/// What is cached: the request that was asked, the answer and its cost.
#[derive(Debug, Serialize, Deserialize)]
struct CacheEntry {
    model: String,
    messages: Vec<Message>,
    content: String,
    prompt_tokens: u64,
    completion_tokens: u64,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ResponseMessage,
}

#[derive(Deserialize)]
struct ResponseMessage {
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

pub struct OpenAiTeacher {
    config: OpenAiConfig,
    fallback: OfflineTeacher,
    agent: ureq::Agent,
}

#[derive(Default)]
struct Counters {
    cache_hits: AtomicUsize,
    requests: AtomicUsize,
    retries: AtomicUsize,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

impl OpenAiTeacher {
    /// `seed` seeds the offline teacher that replaces rejected answers.
    pub fn new(config: OpenAiConfig, seed: u64) -> Result<Self, TeacherError> {
        if config.concurrency == 0 {
            return Err(TeacherError::Config(
                "concurrency must be at least 1".into(),
            ));
        }
        if config.model.trim().is_empty() {
            return Err(TeacherError::Config("no model given".into()));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(config.timeout_s)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self {
            config,
            fallback: OfflineTeacher::new(seed),
            agent,
        })
    }

    fn messages(&self, dataset: &Dataset, request: &FillRequest) -> Vec<Message> {
        let user = match request {
            FillRequest::Preference { history, .. } => {
                let lines: Vec<String> = history
                    .iter()
                    .map(|i| format!("- {}", describe_item(&dataset.items[i.index()], false)))
                    .collect();
                PREFERENCE_PROMPT.replace("{history}", &lines.join("\n"))
            }
            FillRequest::Intention { user, item } => {
                let review = dataset.sequences[user.index()]
                    .iter()
                    .find(|x| x.item == *item)
                    .and_then(|x| x.review.as_ref())
                    .map(|r| {
                        [r.summary.as_deref(), r.text.as_deref()]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                INTENTION_PROMPT
                    .replace("{item}", &describe_item(&dataset.items[item.index()], true))
                    .replace("{review}", &review)
            }
        };
        vec![
            Message {
                role: "system".into(),
                content: SYSTEM_PROMPT.trim().into(),
            },
            Message {
                role: "user".into(),
                content: user.trim().into(),
            },
        ]
    }

    fn body(&self, messages: &[Message]) -> serde_json::Value {
        json!({
            "model": self.config.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        })
    }

    fn cache_path(&self, body: &serde_json::Value) -> PathBuf {
        let key = hex::encode(Sha256::digest(body.to_string().as_bytes()));
        self.config
            .cache_dir
            .join(&key[..2])
            .join(format!("{key}.json"))
    }

    /// The answer to one request: from the cache, or asked and then cached.
    fn answer(&self, messages: &[Message], counters: &Counters) -> Result<String, TeacherError> {
        let body = self.body(messages);
        let path = self.cache_path(&body);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let entry: CacheEntry =
                    serde_json::from_str(&text).map_err(|e| TeacherError::Cache {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(entry.content);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(TeacherError::Io { path, source }),
        }
        let (content, usage) = self.ask(&body, counters)?;
        counters
            .prompt_tokens
            .fetch_add(usage.prompt_tokens, Ordering::Relaxed);
        counters
            .completion_tokens
            .fetch_add(usage.completion_tokens, Ordering::Relaxed);
        let entry = CacheEntry {
            model: self.config.model.clone(),
            messages: messages.to_vec(),
            content: content.clone(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
        };
        let bytes = serde_json::to_vec_pretty(&entry).expect("cache entries serialise");
        write_atomic(&path, &bytes).map_err(|source| TeacherError::Io { path, source })?;
        Ok(content)
    }

    /// POSTs with retries: 429, 5xx and transport failures wait (exponentially longer, or as
    /// long as `Retry-After` says) and try again; any other status fails at once.
    fn ask(
        &self,
        body: &serde_json::Value,
        counters: &Counters,
    ) -> Result<(String, Usage), TeacherError> {
        let url = format!(
            "{}/chat/completions",
            self.config.base_url.trim_end_matches('/')
        );
        let fail = |message: String| TeacherError::Request {
            url: url.clone(),
            message,
        };
        let payload = body.to_string();
        let mut attempt = 0;
        loop {
            counters.requests.fetch_add(1, Ordering::Relaxed);
            let mut req = self
                .agent
                .post(&url)
                .header("Content-Type", "application/json");
            if let Some(key) = &self.config.api_key {
                req = req.header("Authorization", &format!("Bearer {key}"));
            }
            let outcome = req.send(payload.as_str());
            let (retryable, wait_hint, message) = match outcome {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = resp.body_mut().read_to_string().unwrap_or_default();
                    if status == 200 {
                        let parsed: ChatResponse = serde_json::from_str(&text)
                            .map_err(|e| fail(format!("unreadable response: {e}")))?;
                        let content = parsed
                            .choices
                            .into_iter()
                            .next()
                            .and_then(|c| c.message.content)
                            .ok_or_else(|| fail("response has no message content".into()))?;
                        let usage = parsed.usage.unwrap_or(Usage {
                            prompt_tokens: 0,
                            completion_tokens: 0,
                        });
                        return Ok((content, usage));
                    }
                    let short: String = text.chars().take(300).collect();
                    (
                        status == 429 || status >= 500,
                        retry_after,
                        format!("HTTP {status}: {short}"),
                    )
                }
                Err(e) => (true, None, e.to_string()),
            };
            if !retryable || attempt >= self.config.max_retries {
                return Err(fail(format!("{message} (after {} attempts)", attempt + 1)));
            }
            let backoff =
                Duration::from_millis(self.config.backoff_ms.saturating_mul(1 << attempt.min(16)));
            let wait = wait_hint.unwrap_or(backoff).min(MAX_BACKOFF);
            tracing::debug!(%message, ?wait, "teacher request failed; retrying");
            counters.retries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(wait);
            attempt += 1;
        }
    }
}

/// "Title | categories: a > b | brand: x | features: ...": what the prompt shows of an item.
fn describe_item(item: &Item, with_features: bool) -> String {
    let mut s = item.title.clone();
    if !item.categories.is_empty() {
        s.push_str(&format!(" | categories: {}", item.categories.join(" > ")));
    }
    if let Some(brand) = &item.brand {
        s.push_str(&format!(" | brand: {brand}"));
    }
    if with_features && !item.features.is_empty() {
        let features: Vec<&str> = item
            .features
            .iter()
            .take(PROMPT_FEATURES)
            .map(String::as_str)
            .collect();
        s.push_str(&format!(" | features: {}", features.join(" / ")));
    }
    s
}

/// One line, no surrounding quotes: answers often come wrapped.
fn clean(answer: &str) -> String {
    let joined = answer.split_whitespace().collect::<Vec<_>>().join(" ");
    joined
        .trim_matches(|c| c == '"' || c == '\u{201c}' || c == '\u{201d}')
        .trim()
        .to_string()
}

impl Teacher for OpenAiTeacher {
    fn fill(&self, dataset: &Dataset, requests: &[FillRequest]) -> Result<Filled, TeacherError> {
        let counters = Counters::default();
        // Requests with the same prompt (the same item for two users, without reviews) are
        // asked once.
        let mut prompts: Vec<Vec<Message>> = Vec::new();
        let mut prompt_of = Vec::with_capacity(requests.len());
        let mut index: HashMap<String, usize> = HashMap::new();
        for request in requests {
            let messages = self.messages(dataset, request);
            let key = serde_json::to_string(&messages).expect("messages serialise");
            let i = *index.entry(key).or_insert_with(|| {
                prompts.push(messages);
                prompts.len() - 1
            });
            prompt_of.push(i);
        }
        let answers: Mutex<Vec<Option<String>>> = Mutex::new(vec![None; prompts.len()]);
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let first_error: Mutex<Option<TeacherError>> = Mutex::new(None);
        let bar = ProgressBar::new(prompts.len() as u64).with_style(
            ProgressStyle::with_template("teacher {bar:40} {pos}/{len} ({eta} left)")
                .expect("valid progress template"),
        );
        std::thread::scope(|scope| {
            for _ in 0..self.config.concurrency.min(prompts.len().max(1)) {
                scope.spawn(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(messages) = prompts.get(i) else {
                            break;
                        };
                        match self.answer(messages, &counters) {
                            Ok(answer) => {
                                answers.lock().expect("no worker panics")[i] = Some(answer)
                            }
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                first_error
                                    .lock()
                                    .expect("no worker panics")
                                    .get_or_insert(e);
                            }
                        }
                        bar.inc(1);
                    }
                });
            }
        });
        bar.finish_and_clear();
        if let Some(e) = first_error.into_inner().expect("no worker panics") {
            return Err(e);
        }
        let answers = answers.into_inner().expect("no worker panics");
        let mut fills: Vec<Option<Fill>> = Vec::with_capacity(requests.len());
        let mut rejected = Vec::new();
        for (request, prompt) in requests.iter().zip(prompt_of) {
            let text = clean(
                answers[prompt]
                    .as_deref()
                    .expect("every prompt was answered"),
            );
            let title: &str = &dataset.items[ItemId::index(request.avoid())].title;
            if text.is_empty() || mentions_title(&text, title) {
                rejected.push(request.clone());
                fills.push(None);
            } else {
                fills.push(Some(Fill {
                    text,
                    phrasing: None,
                }));
            }
        }
        let mut replacements = self.fallback.fill(dataset, &rejected)?.fills.into_iter();
        let fills = fills
            .into_iter()
            .map(|f| {
                f.unwrap_or_else(|| replacements.next().expect("one replacement per rejection"))
            })
            .collect::<Vec<_>>();
        let report = TeacherReport {
            teacher: format!("openai:{}", self.config.model),
            fills: fills.len(),
            cache_hits: counters.cache_hits.into_inner(),
            requests: counters.requests.into_inner(),
            retries: counters.retries.into_inner(),
            prompt_tokens: counters.prompt_tokens.into_inner(),
            completion_tokens: counters.completion_tokens.into_inner(),
            rejected: rejected.len(),
        };
        tracing::info!(
            requests = report.requests,
            cache_hits = report.cache_hits,
            prompt_tokens = report.prompt_tokens,
            completion_tokens = report.completion_tokens,
            "teacher done"
        );
        Ok(Filled { fills, report })
    }
}
