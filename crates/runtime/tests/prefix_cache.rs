//! The prefix cache against the real test model: a finished sequence keeps
//! its KV cells, and a request sharing a prefix with them decodes only the
//! rest. Each test starts a server of its own, so what is cached is known.

mod common;

use common::{start, MODEL};
use serde_json::{json, Value};

async fn post(url: &str, path: &str, body: &Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .json(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

/// A prompt of a few hundred tokens, so that a cached run and an uncached
/// one differ in more than a token or two.
fn long_prompt(topic: &str) -> String {
    let mut text = format!("Notes on {topic}.\n");
    for i in 1..=40 {
        text.push_str(&format!(
            "{i}. The {topic} of day {i} was recorded in the log.\n"
        ));
    }
    text.push_str("Summary: the");
    text
}

fn count(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing: {v}"))
}

#[tokio::test]
async fn a_cached_run_gives_the_text_of_an_uncached_one() {
    let server = start(1, 4, 2048);
    let url = &server.url;
    // Sampled with a seed, and long enough that a last-bit difference in
    // the logits would show.
    let request = json!({
        "model": MODEL, "prompt": long_prompt("weather"), "raw": true, "stream": false,
        "options": {"num_predict": 48, "temperature": 0.8, "seed": 42}
    });
    let uncached = post(url, "/api/generate", &request).await;
    let prompt_tokens = count(&uncached, "prompt_eval_count");
    assert!(prompt_tokens > 300, "{uncached}");

    let cached = post(url, "/api/generate", &request).await;
    assert_eq!(cached["response"], uncached["response"]);
    // Only the last prompt token is evaluated again, for its logits.
    assert_eq!(count(&cached, "prompt_eval_count"), 1, "{cached}");

    // Another prompt takes the only sequence; the first one is read afresh
    // and still gives the same text.
    let other = json!({
        "model": MODEL, "prompt": long_prompt("harvest"), "raw": true, "stream": false,
        "options": {"num_predict": 4, "temperature": 0}
    });
    post(url, "/api/generate", &other).await;
    let again = post(url, "/api/generate", &request).await;
    assert_eq!(again["response"], uncached["response"]);
    assert!(count(&again, "prompt_eval_count") > 300, "{again}");

    // The OpenAI API reports the same reuse as cached tokens.
    let completion = json!({
        "model": MODEL, "prompt": long_prompt("weather"), "max_tokens": 6,
        "temperature": 0.8, "seed": 42
    });
    let body = post(url, "/v1/completions", &completion).await;
    let usage = &body["usage"];
    assert_eq!(count(usage, "prompt_tokens"), prompt_tokens);
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"].as_u64(),
        Some(prompt_tokens - 1),
        "{usage}"
    );

    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let hits: u64 = metrics
        .lines()
        .find(|l| l.starts_with("paddock_runtime_prefix_cache_hit_tokens_total"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .expect("the hit counter on /metrics") as u64;
    assert!(hits >= prompt_tokens - 1, "{hits}\n{metrics}");
}

#[tokio::test]
async fn the_next_turn_and_the_next_conversation_reuse_what_was_read() {
    // Two sequences: the second conversation could go to the unused one,
    // but goes to the one holding its system prompt.
    let server = start(2, 4, 2048);
    let url = &server.url;
    let system = long_prompt("the lighthouse");
    let turn = |messages: Value| json!({"model": MODEL, "messages": messages, "max_tokens": 12, "temperature": 0});
    let mut messages = json!([
        {"role": "system", "content": system},
        {"role": "user", "content": "What was recorded on day 3?"}
    ]);
    let first = post(url, "/v1/chat/completions", &turn(messages.clone())).await;
    let first_prompt = count(&first["usage"], "prompt_tokens");
    assert_eq!(
        first["usage"]["prompt_tokens_details"]["cached_tokens"], 0,
        "nothing is cached yet"
    );
    let answer = first["choices"][0]["message"]["content"].as_str().unwrap();
    let list = messages.as_array_mut().unwrap();
    list.push(json!({"role": "assistant", "content": answer}));
    list.push(json!({"role": "user", "content": "And on day 4?"}));
    let second = post(url, "/v1/chat/completions", &turn(messages)).await;
    let cached = count(&second["usage"]["prompt_tokens_details"], "cached_tokens");
    // Everything of turn one up to the answer, which the template may
    // render a little differently from how it was generated.
    assert!(cached >= first_prompt - 4, "{cached} of {first_prompt}");

    // The Ollama API, streamed: a new conversation with the same system
    // prompt evaluates little more than its own question.
    let response = reqwest::Client::new()
        .post(format!("{url}/api/chat"))
        .json(
            &json!({"model": MODEL, "stream": true, "options": {"num_predict": 4, "temperature": 0},
            "messages": [{"role": "system", "content": system},
                         {"role": "user", "content": "Which day came last?"}]}),
        )
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["done"], true);
    let evaluated = count(&last, "prompt_eval_count");
    assert!(
        evaluated < 30,
        "{evaluated} of about {first_prompt} evaluated"
    );
}
