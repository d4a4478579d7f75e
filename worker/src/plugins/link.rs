//! The import policy and the linker: a plugin may import only the deny-all WASI ([`wasi`]),
//! whose timers are made instant, and wasi:http's client ([`super::http`]), linked only for
//! the plugins that import it and used only in batches granted hosts; its exports say which
//! interface it implements.

use wasmtime::StoreContextMut;
use wasmtime::component::{Component, InstancePre, Linker, Resource, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::{DynPollable, Pollable};

use super::interface::{self, Interface, RangesIndices, RecordsIndices, v1, v2};
use super::sandbox::{SandboxedEngine, StoreState};
use super::{http, wasi};

/// Ready-to-instantiate code, by interface version; for v2, where its optional `ranges` and
/// `records` exports are when it has them.
pub(super) enum Pre {
    V1(v1::PluginPre<StoreState>),
    V2 {
        instance_pre: InstancePre<StoreState>,
        compute: v2::PluginIndices,
        ranges: Option<RangesIndices>,
        records: Option<RecordsIndices>,
    },
}

/// The linker every plugin is instantiated with: the deny-all WASI ([`wasi`]), with the
/// clock's sleeps made instant (below), and the plugin's version read from its exports.
pub(super) fn link(component: &Component, engine: &SandboxedEngine) -> Result<Pre, String> {
    let mut linker: Linker<StoreState> = Linker::new(engine.engine());
    let link_error = |e: wasmtime::Error| format!("cannot link WASI: {e:#}");
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link_error)?;
    instant_sleeps(&mut linker).map_err(link_error)?;
    if imports_http(component, engine) {
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)
            .map_err(|e| format!("cannot link wasi:http: {e:#}"))?;
        http::body::link(&mut linker).map_err(|e| format!("cannot link wasi:http: {e:#}"))?;
    }
    let exports: Vec<String> = component
        .component_type()
        .exports(engine.engine())
        .map(|(name, _)| name.to_owned())
        .collect();
    let interface = Interface::of(exports.iter().map(String::as_str)).ok_or_else(|| {
        format!(
            "does not export {} or {} (it exports: {})",
            interface::V2,
            interface::V1,
            if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            }
        )
    })?;
    let instance_pre = linker
        .instantiate_pre(component)
        .map_err(|e| format!("cannot be instantiated: {e:#}"))?;
    let does_not_implement =
        |e: wasmtime::Error| format!("does not implement {}: {e:#}", interface.name());
    Ok(match interface {
        Interface::V1 => Pre::V1(v1::PluginPre::new(instance_pre).map_err(does_not_implement)?),
        Interface::V2 => {
            Pre::V2 {
                compute: v2::PluginIndices::new(&instance_pre).map_err(does_not_implement)?,
                // Optional: without it, range blocks go through `compute.process`. Its types are
                // checked at instantiation, as the other exports' are.
                ranges: match exports.iter().any(|e| e == interface::V2_RANGES) {
                    true => Some(RangesIndices::new(&instance_pre).map_err(|e| {
                        format!("does not implement {}: {e:#}", interface::V2_RANGES)
                    })?),
                    false => None,
                },
                // Optional too: without it, record blocks go through `compute.process`.
                records: match exports.iter().any(|e| e == interface::V2_RECORDS) {
                    true => Some(RecordsIndices::new(&instance_pre).map_err(|e| {
                        format!("does not implement {}: {e:#}", interface::V2_RECORDS)
                    })?),
                    false => None,
                },
                instance_pre,
            }
        }
    })
}

/// The version of `wasi:clocks` that wasmtime-wasi links (its newest 0.2 release); imports of
/// any older 0.2 version resolve to it.
const WASI_CLOCKS_MONOTONIC: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Replaces WASI's timers with ones that are ready at once. wasmtime-wasi's timers wait in
/// real time inside the host, where the CPU deadline cannot interrupt them: a plugin polling
/// a timer of a year would hold its call slot for a year. With the clocks frozen
/// ([`wasi::FROZEN_WALL_CLOCK`]), no time passes for a plugin anyway, so a sleep returns
/// immediately.
fn instant_sleeps(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(WASI_CLOCKS_MONOTONIC)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: StoreContextMut<'_, StoreState>, (_duration,): (u64,)| {
            ready_now(store.data_mut().ctx().table).map(|p| (p,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: StoreContextMut<'_, StoreState>, (_when,): (u64,)| {
            ready_now(store.data_mut().ctx().table).map(|p| (p,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A pollable that is always ready.
struct ReadyNow;

#[wasmtime_wasi::async_trait]
impl Pollable for ReadyNow {
    async fn ready(&mut self) {}
}

fn ready_now(table: &mut ResourceTable) -> wasmtime::Result<Resource<DynPollable>> {
    let resource = table.push(ReadyNow)?;
    wasmtime_wasi::p2::subscribe(table, resource)
}

/// Whether the component imports wasi:http (the client side, all it may).
pub(super) fn imports_http(component: &Component, engine: &SandboxedEngine) -> bool {
    component
        .component_type()
        .imports(engine.engine())
        .any(|(name, _)| http::is_http_import(name))
}

/// The sandbox's first rule: a plugin gets nothing from the host but the deny-all WASI 0.2
/// ([`wasi`]) and, for batches granted hosts, wasi:http's client ([`super::http`]). Name
/// every other import so the author sees what to remove.
pub(super) fn reject_imports(
    component: &Component,
    engine: &SandboxedEngine,
) -> Result<Vec<String>, String> {
    let ty = component.component_type();
    let (linked, refused): (Vec<String>, Vec<String>) = ty
        .imports(engine.engine())
        .map(|(name, _)| name.to_owned())
        .partition(|name| wasi::is_linked(name) || http::is_http_import(name));
    if refused.is_empty() {
        Ok(linked)
    } else {
        Err(format!(
            "imports {} but plugins may import only WASI 0.2, which the worker links deny-all \
             (no files, network or environment), and wasi:http's client (types and \
             outgoing-handler), for batches granted hosts; see docs/plugins.md",
            refused.join(", ")
        ))
    }
}
