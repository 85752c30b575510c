//! `[[accelerator]]`: VRAM (its memory BAR) and its performance, queues,
//! DMA engines, compute throughput, the link.

use super::super::error::{ErrorKind as K, TopologyError as E};
use super::super::{
    Accelerator, ACCEL_MAX_DMA_ENGINES, ACCEL_MAX_QUEUES, ACCEL_MAX_VRAM, ACCEL_MIN_VRAM,
};
use super::context::Context;
use super::fabric::link_params;
use super::values::{bandwidth, count, latency, size};
use super::R;

pub(super) fn accelerators(cx: &Context) -> R<Vec<Accelerator>> {
    let mut accelerators = Vec::new();
    for (i, a) in cx.raw.accelerators.iter().enumerate() {
        let key = format!("accelerator[{i}]");
        let vram_size = match &a.vram {
            Some(s) => size(&format!("{key}.vram"), s)?,
            None => 256 << 20,
        };
        if !vram_size.is_power_of_two() || !(ACCEL_MIN_VRAM..=ACCEL_MAX_VRAM).contains(&vram_size) {
            return Err(E::new(
                format!("{key}.vram"),
                vram_size,
                K::OutOfRange("a power of two from 2 MiB to 64 GiB".into()),
            ));
        }
        // Its BAR goes above 4 GiB too.
        if vram_size > cx.limits.window_room() {
            return Err(E::new(
                format!("{key}.vram"),
                vram_size,
                K::BeyondAddressSpace(cx.limits.describe()),
            ));
        }
        let queues = match a.queues {
            Some(n) => count(&format!("{key}.queues"), n, ACCEL_MAX_QUEUES.into())?,
            None => 4,
        };
        let dma_engines = match a.dma_engines {
            Some(n) => count(
                &format!("{key}.dma_engines"),
                n,
                ACCEL_MAX_DMA_ENGINES.into(),
            )?,
            None => 2,
        };
        accelerators.push(Accelerator {
            id: a.id.clone(),
            attach: cx.accelerator_attach[i],
            vram_size,
            bar_latency_ns: latency(
                &format!("{key}.bar_latency_ns"),
                a.bar_latency_ns.unwrap_or(100.0),
            )?,
            bar_bandwidth_gbps: bandwidth(
                &format!("{key}.bar_bandwidth_gbps"),
                a.bar_bandwidth_gbps.unwrap_or(500.0),
            )?,
            queues,
            dma_engines,
            // Same range as a bandwidth: positive, finite, at most 1e6.
            compute_gflops: bandwidth(
                &format!("{key}.compute_gflops"),
                a.compute_gflops.unwrap_or(1000.0),
            )?,
            link: link_params(&format!("{key}.link"), &a.link, &cx.fabric.link, false)?,
        });
    }
    Ok(accelerators)
}
