//! Filling a topic fast: batch sends to one queue, retried while the broker sheds load.

use std::time::Duration;

use rmq_wasm::client::{ClientError, Producer, QueueSelector, SendResult};
use rmq_wasm::protocol::MessageQueue;
use rmq_wasm::protocol::code::ResponseCode;
use rmq_wasm::protocol::message::Message;

/// Attempts of one batch while the broker answers SYSTEM_BUSY.
const BUSY_ATTEMPTS: u32 = 100;

/// Sends the batch `make` builds to `queue`. A broker whose send queue waits longer than its
/// `waitTimeMillsInSendQueue` (200 ms) answers SYSTEM_BUSY ("start flow control for a while"):
/// on a loaded machine a million-message fill meets it; the producer's own retries go to the
/// same queue at once, so back off here (20 ms more per attempt, at most 500 ms) and send again.
/// A refused batch was not stored, so a new one (new ids) loses and duplicates nothing.
pub async fn send_batch_when_not_busy(
    producer: &Producer,
    queue: &MessageQueue,
    make: impl Fn() -> Vec<Message>,
) -> Result<SendResult, ClientError> {
    let mut attempt = 0;
    loop {
        match producer.send_batch(make(), QueueSelector::Queue(queue)).await {
            Err(ClientError::Broker { code: ResponseCode::SystemBusy, .. })
                if attempt + 1 < BUSY_ATTEMPTS =>
            {
                attempt += 1;
                tokio::time::sleep(
                    Duration::from_millis(20 * u64::from(attempt)).min(Duration::from_millis(500)),
                )
                .await;
            }
            other => return other,
        }
    }
}
