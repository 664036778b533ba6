//! The connections of a task's output channels (Flink's result subpartitions as their
//! consumers reach them): one TCP connection per channel, opened by the producer, named by a
//! hello frame, and read back for the consumer's credit.

use crate::limits::CHANNEL_CONNECT_ATTEMPTS_MAX;
use crate::runtime::deployment::OutputChannel;
use crate::runtime::frame_io::{read_frame, write_frame};
use crate::runtime::messages::DataFrame;
use crate::runtime::sim_time;
use crate::runtime::task_context::TaskContext;
use crate::runtime::task_error::TaskError;
use crate::runtime::task_mailbox::{MailboxSender, TaskInput};
use crate::time::Duration;
use futures::SinkExt;
use madsim::net::TcpStream;
use tokio::io::WriteHalf;

/// Connects output channel `index` to its consumer and starts reading credit from it.
pub async fn connect_output(
    context: &TaskContext,
    index: usize,
    output: OutputChannel,
    mut inbox: MailboxSender,
) -> Result<WriteHalf<TcpStream>, TaskError> {
    let OutputChannel {
        target,
        channel,
        address,
    } = output;
    let hello = DataFrame::Hello {
        attempt: context.attempt,
        source: context.subtask,
        target,
        channel,
    };
    let mut last_error = String::new();
    for _ in 0..CHANNEL_CONNECT_ATTEMPTS_MAX {
        match TcpStream::connect(address).await {
            Ok(mut stream) => {
                write_frame(&mut stream, &hello)
                    .await
                    .map_err(|e| TaskError::Hello {
                        target,
                        reason: e.to_string(),
                    })?;
                let (mut reader, writer) = tokio::io::split(stream);
                madsim::task::spawn(async move {
                    while let Ok(Some(DataFrame::Credit(credit))) = read_frame(&mut reader).await {
                        let granted = TaskInput::Credit {
                            output: index,
                            credit,
                        };
                        if inbox.send(granted).await.is_err() {
                            return;
                        }
                    }
                    let _ = inbox.send(TaskInput::OutputClosed { output: index }).await;
                });
                return Ok(writer);
            }
            Err(error) => last_error = error.to_string(),
        }
        sim_time::sleep(Duration::from_ms(100)).await;
    }
    Err(TaskError::Connect {
        subtask: context.subtask,
        target,
        address,
        reason: last_error,
    })
}
