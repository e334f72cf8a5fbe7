//! Exec: run argv (never through a shell) and stream its output and exit status; on a
//! pseudo-terminal when the request asks for one ([`super::pty`]).

use std::path::Path;
use std::process::Stdio;

use vcontainer_protocol::{AgentMsg, ErrorKind, ExecRequest};

use super::pty;
use super::streaming::{spawn_piped, stream_child};
use super::OpError;
use crate::agent::Agent;
use crate::conn::{FrameReader, FrameWriter};
use crate::process;

pub async fn exec(
    agent: &Agent,
    req: ExecRequest,
    rd: FrameReader,
    wr: &mut FrameWriter,
) -> Result<(), OpError> {
    let Some(argv0) = req.argv.first() else {
        return Err(OpError::new(ErrorKind::BadRequest, "empty argv"));
    };
    if let Some(cwd) = &req.cwd {
        // Checked here: a failed chdir in the child would read as "command not found".
        if !Path::new(cwd).is_dir() {
            return Err(OpError::new(
                ErrorKind::BadRequest,
                format!("working directory {cwd}: no such directory"),
            ));
        }
    }
    if req.engine {
        agent.engine.start().await?;
    }
    if let Some(size) = req.tty {
        let status = pty::exec_tty(agent, &req, size, rd, wr).await?;
        wr.send(&AgentMsg::Exited(status)).await?;
        return Ok(());
    }
    let mut cmd = process::command(argv0, &req.argv[1..], &req.env);
    cmd.stdin(if req.stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    if let Some(cwd) = &req.cwd {
        cmd.current_dir(cwd);
    }
    let running = spawn_piped(agent, &mut cmd, argv0)?;
    let status = stream_child(running, rd, wr).await?;
    wr.send(&AgentMsg::Exited(status)).await?;
    Ok(())
}
