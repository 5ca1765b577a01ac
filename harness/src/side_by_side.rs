//! Futures driven side by side on the task that awaits them: for futures that borrow (the
//! suite, a server set, the reporters) and so cannot be spawned.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Drive every future to its end; their outputs in their order, whatever order they end in.
/// Each wake polls every unfinished one: meant for tens of futures, not thousands.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("every future ended")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_keep_the_order_of_their_futures_whatever_order_they_end_in() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let got = rt.block_on(join_all(
            [30u64, 10, 20]
                .into_iter()
                .map(|ms| async move {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    ms
                })
                .collect(),
        ));
        assert_eq!(got, [30, 10, 20]);
    }
}
