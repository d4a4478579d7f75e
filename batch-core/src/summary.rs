//! The human summary block the starter prints: the demo's block, line for line, followed by
//! what this project adds (plugin and digest, workflow and activity counts, workflow id).

use std::fmt::Write;

use crate::{DEFAULT_PLUGIN, NodeResult};

const RULE: &str = "======================================================================";

pub fn render_summary(workflow_id: &str, result: &NodeResult) -> String {
    let o = &result.outputs;
    let config = &result.config;
    // The demo's default plugin squares; other plugins compute something else.
    let what = if config.plugin.name == DEFAULT_PLUGIN {
        "squares"
    } else {
        "outputs"
    };
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(s, "{RULE}\nBATCH PROCESSING COMPLETE\n{RULE}");
    let _ = writeln!(s, "Total numbers processed: {}", o.count);
    let _ = writeln!(s, "Tree depth (max nesting level): {}", result.max_depth);
    let _ = writeln!(s, "Batch size (activities per leaf): {}", config.batch_size);
    let _ = writeln!(s, "Max children per workflow: {}", config.max_children);
    let _ = writeln!(s, "Sum of all {what}: {}", o.sum);
    let _ = writeln!(s);
    let _ = writeln!(s, "First 10 results: {:?}", o.head);
    let _ = writeln!(s, "Last 10 results: {:?}", o.tail);
    let _ = writeln!(s);
    let _ = writeln!(s, "Plugin: {}", config.plugin.name);
    let _ = writeln!(s, "Leaf mode: {}", config.mode);
    if let Some(digest) = &config.plugin.digest {
        let _ = writeln!(s, "Plugin digest: sha256:{digest}");
    }
    if let Some(plugin_config) = &config.plugin_config {
        let _ = writeln!(
            s,
            "Plugin config: sha256:{} ({} bytes)",
            plugin_config.digest,
            plugin_config.json.len()
        );
    }
    if o.records > 0 {
        let _ = writeln!(s, "Records: {} ({} bytes)", o.records, o.record_bytes);
    }
    if o.skipped > 0 {
        let _ = writeln!(s, "Skipped: {}", o.skipped);
    }
    if !o.http.is_empty() {
        let _ = writeln!(s, "HTTP requests: {}", o.http);
    }
    if !config.tolerance.is_none() || !result.failures.is_empty() {
        write_failures(&mut s, result);
    }
    if let Some(retry) = &config.retry_of {
        let now = &config.plugin;
        let version = if now.digest == retry.plugin.digest {
            "the same version".to_owned()
        } else {
            format!("then {}", retry.plugin.display_short())
        };
        let _ = writeln!(
            s,
            "Retry of: {} ({} failed items; plugin now {}, {version})",
            retry.batch,
            retry.failed,
            now.display_short()
        );
    }
    match (&config.source, &config.retry_of) {
        (Some(source), None) => {
            let _ = writeln!(
                s,
                "Source: {} ({}, splits of {} bytes)",
                source.location,
                source.describe(),
                config.batch_size
            );
        }
        (Some(source), Some(_)) => {
            let _ = writeln!(
                s,
                "Source: {} ({}; each record read at its position, {} per leaf)",
                source.location,
                source.describe(),
                config.batch_size
            );
        }
        (None, _) => {}
    }
    if let Some(output) = &config.output {
        let _ = writeln!(
            s,
            "Output: {} ({} parts, {} bytes; manifest {})",
            output,
            result.parts.len(),
            crate::output::total_bytes(&result.parts),
            crate::source::MANIFEST_NAME
        );
    }
    let _ = writeln!(s, "Workflows: {}", result.workflows);
    let _ = writeln!(s, "Activities: {}", result.activities);
    let _ = writeln!(s, "Workflow ID: {workflow_id}");
    let _ = writeln!(s, "{RULE}");
    s
}

/// How many failed items the summary shows (the JSON result has [`crate::failures::SAMPLES`]).
const SUMMARY_SAMPLES: usize = 5;

/// The failed items' lines: how many, by kind, against the tolerance, the first few, and where
/// the full report is.
fn write_failures(s: &mut String, result: &NodeResult) {
    let f = &result.failures;
    let tolerance = result.config.tolerance.describe();
    if f.is_empty() {
        let _ = writeln!(s, "Failed items: 0 (tolerated: {tolerance})");
        return;
    }
    let _ = writeln!(
        s,
        "Failed items: {} ({}; tolerated: {tolerance})",
        f.count,
        f.kinds()
    );
    for item in f.samples.iter().take(SUMMARY_SAMPLES) {
        // Reasons come from plugins and data: shown, never acted on by a terminal.
        let _ = writeln!(
            s,
            "  item {}: {}: {}",
            result
                .config
                .source
                .as_ref()
                .map_or_else(|| item.index.to_string(), |s| s.item_name(item.index)),
            item.kind,
            crate::text::neutralised(&item.reason)
        );
    }
    if f.count > SUMMARY_SAMPLES as u64 {
        let _ = writeln!(s, "  ... and {} more", f.count - SUMMARY_SAMPLES as u64);
    }
    if let Some(output) = &result.config.output {
        let _ = writeln!(
            s,
            "Failed items report: {}/{}/ ({} parts)",
            output.trim_end_matches('/'),
            crate::output::FAILED_DIR,
            result.failed_parts.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ItemRange, Outputs, PluginRef};

    #[test]
    fn matches_the_demo_block_for_n_50() {
        let mut outputs = Outputs::default();
        (1..=50u64).for_each(|i| outputs.push(i * i));
        let plugin = PluginRef {
            name: "square_number".into(),
            digest: Some("ab".repeat(32)),
        };
        let config = crate::BatchConfig {
            batch_size: 10,
            max_children: 5,
            plugin,
            mode: crate::LeafMode::Item,
            max_in_flight: 1000,
            max_leaves_in_flight: 200,
            plugin_config: None,
            source: None,
            output: None,
            output_encoding: Default::default(),
            tolerance: crate::Tolerance::default(),
            retry_of: None,
            http: None,
        };
        let result = NodeResult {
            range: ItemRange::new(1, 50),
            config,
            outputs,
            max_depth: 1,
            workflows: 6,
            activities: 50,
            parts: Vec::new(),
            failures: crate::Failures::default(),
            failed_parts: Vec::new(),
        };
        let text = render_summary("batch-processing-50-b10-c5", &result);
        let demo = "\
======================================================================
BATCH PROCESSING COMPLETE
======================================================================
Total numbers processed: 50
Tree depth (max nesting level): 1
Batch size (activities per leaf): 10
Max children per workflow: 5
Sum of all squares: 42925

First 10 results: [1, 4, 9, 16, 25, 36, 49, 64, 81, 100]
Last 10 results: [1681, 1764, 1849, 1936, 2025, 2116, 2209, 2304, 2401, 2500]
";
        assert!(text.starts_with(demo), "{text}");
        assert!(
            text.contains("Plugin: square_number\nLeaf mode: item\nPlugin digest: sha256:abab")
        );
        assert!(
            text.contains(
                "Workflows: 6\nActivities: 50\nWorkflow ID: batch-processing-50-b10-c5\n"
            )
        );
        assert!(text.ends_with("=\n"));
    }
}

/// The plugins a worker offers, one per line: name, digest, size, interface, or the error.
pub fn render_plugin_list(plugins: &[crate::PluginInfo]) -> String {
    if plugins.is_empty() {
        return "no plugins\n".to_owned();
    }
    let width = plugins
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut s = format!(
        "{:width$}  {:71}  {:>9}  {:7}  INTERFACE\n",
        "NAME", "DIGEST", "BYTES", "INPUT"
    );
    for p in plugins {
        let digest = p
            .digest
            .as_ref()
            .map_or("-".to_owned(), |d| format!("sha256:{d}"));
        let size = p.size.map_or("-".to_owned(), |n| n.to_string());
        let interface = p.interface.as_deref().unwrap_or("-");
        let input = p
            .input
            .as_deref()
            .unwrap_or(if p.interface.is_some() { "any" } else { "-" });
        let _ = writeln!(
            s,
            "{:width$}  {digest:71}  {size:>9}  {input:7}  {interface}",
            p.name
        );
        if let Some(error) = &p.error {
            let _ = writeln!(s, "{:width$}  error: {error}", "");
        }
    }
    s
}

#[cfg(test)]
mod list_tests {
    use super::*;
    use crate::PluginInfo;

    #[test]
    fn lists_good_and_bad_plugins() {
        let good = PluginInfo {
            name: "square_number".into(),
            digest: Some("ab".repeat(32)),
            interface: Some("batch:plugin/compute@1.0.0".into()),
            input: Some("numbers".into()),
            size: Some(15451),
            error: None,
        };
        let bad = PluginInfo {
            name: "broken".into(),
            digest: None,
            interface: None,
            input: None,
            size: None,
            error: Some("the file is empty".into()),
        };
        let text = render_plugin_list(&[good, bad]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("NAME"));
        assert!(lines[1].starts_with("square_number  sha256:abab"));
        assert!(lines[1].ends_with("15451  numbers  batch:plugin/compute@1.0.0"));
        assert!(lines[2].starts_with("broken         -"));
        assert_eq!(lines[3].trim(), "error: the file is empty");
        assert_eq!(render_plugin_list(&[]), "no plugins\n");
    }
}
