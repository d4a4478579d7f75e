//! From a file's bytes to compiled code. Accepted forms, so plugins can come from any language:
//! - a component (binary, or text `.wat` in the component format);
//! - a core module carrying the `batch:plugin` component type in a custom section, as
//!   `wit-bindgen` (Rust, C, ...) emits for `wasm32-unknown-unknown`: wrapped here with
//!   `wit-component`, so the output of `cargo build` can be dropped in as it is.
//!
//! Also what a file says about itself without compiling: whether its start could be a plugin
//! ([`check_start`]) and the input it states ([`stated_input`]).

use std::sync::mpsc;
use std::time::Duration;

use batch_core::PluginInput;
use batch_core::text::bounded_message;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::sandbox::SandboxedEngine;

/// Wraps and compiles `bytes` on a thread of its own, giving up after the sandbox's compile
/// timeout. Cranelift cannot be interrupted: a compile that times out finishes in the
/// background and its result is dropped (the file is remembered as rejected until it changes).
pub(super) fn compile(engine: &SandboxedEngine, bytes: &[u8]) -> Result<Component, String> {
    let timeout = engine.limits().compile_timeout;
    // Compiles take turns (`--plugin-compiles`): each takes ~10x the plugin's size in memory.
    let slot = engine.compile_slot_blocking();
    let (engine, bytes) = (engine.engine().clone(), bytes.to_vec());
    let (done, result) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("plugin-compile".into())
        .spawn(move || {
            let compiled = compile_now(&engine, &bytes);
            // The slot goes back once the compile has stopped, even one given up on.
            drop(slot);
            // The receiver may have given up: nothing to do then.
            let _ = done.send(compiled);
        })
        .map_err(|e| format!("cannot start a compile thread: {e}"))?;
    match result.recv_timeout(timeout) {
        Ok(compiled) => compiled,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "compiling it took longer than the {} limit",
            human_duration(timeout)
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("the compile thread panicked".into()),
    }
}

fn compile_now(engine: &Engine, bytes: &[u8]) -> Result<Component, String> {
    let component_bytes = to_component_bytes(bytes)?;
    Component::new(engine, &component_bytes)
        .map_err(|e| bounded_message(&format!("does not compile: {e:#}")))
}

fn human_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// The input a plugin states in its [`batch_core::plugin_input::SECTION`] custom section
/// (anywhere in it: a Rust plugin's sits in its core module), if it states one.
pub fn stated_input(bytes: &[u8]) -> Result<Option<PluginInput>, String> {
    if !bytes.starts_with(b"\0asm") {
        // WebAssembly text (test fixtures): no custom sections.
        return Ok(None);
    }
    let mut stated = None;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(wasmparser::Payload::CustomSection(section)) = payload else {
            continue;
        };
        if section.name() != batch_core::plugin_input::SECTION {
            continue;
        }
        let text = String::from_utf8_lossy(section.data());
        let input = PluginInput::parse(&text).ok_or_else(|| {
            format!(
                "its {} section says {}, not one of {}",
                batch_core::plugin_input::SECTION,
                format_args!("{:?}", batch_core::text::bounded(&text, 64)),
                PluginInput::ALL.map(PluginInput::as_str).join(", ")
            )
        })?;
        if stated.is_some_and(|s| s != input) {
            return Err(format!(
                "it states two inputs in its {} sections",
                batch_core::plugin_input::SECTION
            ));
        }
        stated = Some(input);
    }
    Ok(stated)
}

/// Whether a file whose first bytes are `head` (of `len` in all) could be a plugin, without
/// compiling or reading it whole: not empty, WebAssembly text, or binary WebAssembly whose
/// sections parse as far as `head` goes.
pub fn check_start(head: &[u8], len: u64) -> Result<(), String> {
    if head.is_empty() {
        return Err("the file is empty".into());
    }
    if !head.starts_with(b"\0asm") {
        // Text is parsed when it is loaded, as it is compiled; only its start here.
        return to_component_bytes(head).map(|_| ());
    }
    // As `Parser::parse_all` does, but over the head only: nested modules and components
    // parsed in turn, function bodies skipped.
    let mut parser = wasmparser::Parser::new(0);
    let mut outer = Vec::new();
    let mut at = 0;
    let eof = head.len() as u64 == len;
    loop {
        let (consumed, payload) = match parser.parse(&head[at..], eof) {
            Ok(wasmparser::Chunk::NeedMoreData(_)) => return Ok(()),
            Ok(wasmparser::Chunk::Parsed { consumed, payload }) => (consumed, payload),
            Err(e) => return Err(format!("is not well-formed WebAssembly: {e}")),
        };
        at += consumed;
        match payload {
            wasmparser::Payload::CodeSectionStart { size, .. } => {
                let size = size as usize;
                if head.len() - at < size {
                    return Ok(());
                }
                parser.skip_section();
                at += size;
            }
            wasmparser::Payload::ModuleSection { parser: inner, .. }
            | wasmparser::Payload::ComponentSection { parser: inner, .. } => {
                outer.push(std::mem::replace(&mut parser, inner));
            }
            wasmparser::Payload::End(_) => match outer.pop() {
                Some(p) => parser = p,
                None => return Ok(()),
            },
            _ => {}
        }
    }
}

fn to_component_bytes(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    if wasmparser::Parser::is_core_wasm(bytes) {
        return wit_component::ComponentEncoder::default()
            .module(bytes)
            .and_then(|encoder| encoder.validate(true).encode())
            .map_err(|e| {
                format!(
                    "is a core module that cannot be wrapped as a component (build it with \
                     wit-bindgen against plugins/wit/plugin.wit): {e:#}"
                )
            });
    }
    if wasmparser::Parser::is_component(bytes) {
        return Ok(bytes.to_vec());
    }
    if bytes.starts_with(b"\0asm") {
        return Err("is WebAssembly of an unsupported version or layer".into());
    }
    // Text format: `Component::new` parses `.wat` itself (and names the line of a mistake).
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "not WebAssembly (no \\0asm header, and not text)".to_owned())?;
    if !text.trim_start().starts_with(['(', ';']) {
        return Err("not WebAssembly (no \\0asm header, and not WebAssembly text)".into());
    }
    Ok(bytes.to_vec())
}
