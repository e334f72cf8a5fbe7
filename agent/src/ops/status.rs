//! Status: uptime, engine state, the agent's own peak RSS and the guest's memory.

use nix::sys::resource::{getrusage, UsageWho};
use vcontainer_protocol::{AgentMsg, StatusInfo};

use super::OpError;
use crate::agent::Agent;
use crate::conn::FrameWriter;
use crate::console::uptime_ms;
use crate::meminfo::read_meminfo;

pub async fn status(agent: &Agent, wr: &mut FrameWriter) -> Result<(), OpError> {
    let mem = read_meminfo();
    let max_rss_kib = getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| u.max_rss().max(0) as u64) // Linux reports KiB
        .unwrap_or(0);
    let info = StatusInfo {
        uptime_ms: uptime_ms(),
        engine_running: agent.engine.is_running(),
        agent_max_rss_kib: max_rss_kib,
        mem_total_kib: mem.total_kib,
        mem_available_kib: mem.available_kib,
    };
    wr.send(&AgentMsg::Status(info)).await?;
    Ok(())
}
