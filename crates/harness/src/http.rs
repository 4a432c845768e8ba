//! Plain HTTP/1.1 GETs through a library client (ureq), for `/status`, `/health` and
//! `/metrics`. Non-2xx answers are answers, not errors: callers see the code.

use std::time::Duration;

/// How long a GET may take in all.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting may take (a member that is not up yet should fail fast).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout)))
        .build()
        .into()
}

/// GET `url`; (status code, body), or why there was no answer.
pub fn get_url(url: &str, timeout: Duration) -> Result<(u16, String), String> {
    let mut reply = agent(timeout)
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let code = reply.status().as_u16();
    let body = reply
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: {e}"))?;
    Ok((code, body))
}

/// GET `path` on `127.0.0.1:port`; (status code, body), or `None` without an answer.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    get_url(&format!("http://127.0.0.1:{port}{path}"), TIMEOUT).ok()
}

/// The value of the sample `selector` names in a Prometheus text exposition: a bare
/// metric name picks its unlabelled sample, `name{k="v",…}` the sample of that name
/// carrying those labels (and maybe others).
pub fn metric_value(text: &str, selector: &str) -> Option<f64> {
    let (name, labels) = parse_selector(selector)?;
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).ok()?;
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && if labels.is_empty() {
                    s.labels.is_empty()
                } else {
                    labels
                        .iter()
                        .all(|(k, v)| s.labels.get(k) == Some(v.as_str()))
                }
        })
        .and_then(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// `name{k="v",…}` as the name and its label pairs.
fn parse_selector(selector: &str) -> Option<(&str, Vec<(String, String)>)> {
    let Some((name, rest)) = selector.split_once('{') else {
        return Some((selector, Vec::new()));
    };
    let body = rest.strip_suffix('}')?;
    let labels = body
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let v = v.trim().strip_prefix('"')?.strip_suffix('"')?;
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((name, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_value_reads_counters_and_gauges_and_skips_labelled_samples() {
        let text = "# TYPE a counter\na 3\n# TYPE b gauge\nb{x=\"1\"} 7\nb 2.5\n";
        assert_eq!(metric_value(text, "a"), Some(3.0));
        assert_eq!(metric_value(text, "b"), Some(2.5));
        assert_eq!(metric_value(text, "c"), None);
        assert_eq!(metric_value(text, "b{x=\"1\"}"), Some(7.0));
        assert_eq!(metric_value(text, "b{x=\"2\"}"), None);
        // Go's client writes large values as floats; a longer name is another metric.
        let go = "# TYPE process_resident_memory_bytes gauge\n\
                  process_resident_memory_bytes 2.4576e+07\n\
                  process_resident_memory_bytes_max 5\n";
        let rss = "process_resident_memory_bytes";
        assert_eq!(metric_value(go, rss), Some(24_576_000.0));
        assert_eq!(
            metric_value("process_resident_memory_bytes_max 5\n", rss),
            None
        );
    }

    #[test]
    fn a_closed_port_gives_no_answer() {
        let port = crate::ports::free_loopback_ports(1).unwrap()[0];
        assert_eq!(get(port, "/health"), None);
    }
}
