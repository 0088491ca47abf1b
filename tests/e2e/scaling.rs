//! The consumer service's scaling, replayed over a day of queue metrics through the policies' arithmetic as the
//! template configures them (read from deploy/template.yaml, so a changed policy changes the replay): a daily burst
//! of 13 jobs that wait at Zuora for an hour, then a full export of 240 windows. No AWS account: the model is the
//! documented behaviour of the services, minute by minute:
//!
//! - SQS publishes `ApproximateNumberOfMessagesVisible` / `NotVisible` each minute; delayed messages are in neither.
//! - Target tracking (Application Auto Scaling) keeps `(visible + inflight) / MAX([tasks, 1])` near the target: it
//!   scales out after 3 minutes above it, to `ceil(backlog / target)`, and in after 15 minutes below 90 % of it,
//!   each direction after its cooldown; with no running task the task count has no data, and a policy whose metric
//!   lacks data does not scale.
//! - The from-zero alarm (`IF(FILL(tasks, 0) < 1 AND visible > 0, 1, 0)`, one minute) sets the count to 1.
//! - ECS starts a task a minute after the count rises; it stops idle tasks first and never a task under scale-in
//!   protection (the consumer's, while it holds a job).
//! - A consumer task takes up to `jobs_in_flight` messages; a job not finished at Zuora goes back delayed by the
//!   consumer's poll delay (doubling up to its maximum), a finished one is transferred.
//!
//! Run with `--nocapture` to print the table docs/operations.md shows.

use common::config::ConsumerSettings;
use serde_yaml::Value;

const TICK: u64 = 10;
const DAY: u64 = 24 * 3600;

fn number(value: &Value) -> u64 {
    value.as_u64().or_else(|| value.as_str().and_then(|s| s.parse().ok())).unwrap_or_else(|| panic!("{value:?}"))
}

/// The policies as the template sets them, checked against what this model computes.
struct Policy {
    target: u64,
    min: u64,
    max: u64,
    scale_out_cooldown: u64,
    scale_in_cooldown: u64,
    from_zero_cooldown: u64,
}

impl Policy {
    fn from_template() -> Self {
        let t = test_support::deploy_template();
        let (parameters, resources) = (&t["Parameters"], &t["Resources"]);
        let tracking = &resources["ConsumerBacklogScaling"]["Properties"]["TargetTrackingScalingPolicyConfiguration"];
        let metrics = tracking["CustomizedMetricSpecification"]["Metrics"].as_sequence().unwrap();
        let expression = metrics.iter().find(|m| m["ReturnData"] == true).unwrap()["Expression"].as_str().unwrap();
        assert_eq!(expression, "(visible + inflight) / MAX([tasks, 1])", "the model computes this metric");
        let alarm = &resources["ConsumerWorkWaitingAlarm"]["Properties"];
        let metrics = alarm["Metrics"].as_sequence().unwrap();
        let expression = metrics.iter().find(|m| m["ReturnData"] == true).unwrap()["Expression"].as_str().unwrap();
        assert_eq!(expression, "IF(FILL(tasks, 0) < 1 AND visible > 0, 1, 0)", "the model computes this alarm");
        let step = &resources["ConsumerFromZeroScaling"]["Properties"]["StepScalingPolicyConfiguration"];
        assert_eq!(
            (step["AdjustmentType"].as_str(), number(&step["StepAdjustments"][0]["ScalingAdjustment"])),
            (Some("ExactCapacity"), 1)
        );
        Policy {
            target: number(&parameters["JobsPerConsumerTask"]["Default"]),
            min: number(&parameters["ConsumerMinTasks"]["Default"]),
            max: number(&parameters["ConsumerMaxTasks"]["Default"]),
            scale_out_cooldown: number(&tracking["ScaleOutCooldown"]),
            scale_in_cooldown: number(&tracking["ScaleInCooldown"]),
            from_zero_cooldown: number(&step["Cooldown"]),
        }
    }
}

/// One job message.
struct Job {
    /// When Zuora finishes the job.
    ready_at: u64,
    /// How long its files take to transfer.
    transfer: u64,
    /// Delayed until then (visible once it passes), unless held.
    visible_at: u64,
    /// Polls so far (the consumer's delay doubles).
    polls: u32,
    /// The task holding it and until when.
    held: Option<(usize, u64)>,
    /// Whether the holder is transferring its files (else it polls Zuora).
    transferring: bool,
    done_at: Option<u64>,
    /// When it last became visible, to measure how long visible work waits for a task.
    submitted_at: u64,
}

struct Task {
    running_at: u64,
    stopped: bool,
}

/// One row of the table.
struct Row {
    at: u64,
    visible: usize,
    delayed: usize,
    inflight: usize,
    running: usize,
    desired: u64,
}

struct Replay {
    rows: Vec<Row>,
    /// The longest a visible message waited while no task ran, seconds.
    longest_wait_without_task: u64,
    /// Tasks running, minute by minute.
    running: Vec<usize>,
    most_tasks: usize,
    jobs: Vec<Job>,
}

fn replay(policy: &Policy, consumer: &ConsumerSettings, jobs_in_flight: usize, mut jobs: Vec<Job>) -> Replay {
    let mut tasks: Vec<Task> = Vec::new();
    let mut desired = policy.min;
    let (mut above, mut below) = (0u32, 0u32);
    let (mut last_out, mut last_in) = (0u64, 0u64);
    let mut replay =
        Replay { rows: Vec::new(), longest_wait_without_task: 0, running: Vec::new(), most_tasks: 0, jobs: Vec::new() };
    let mut no_task_since: Option<u64> = None;
    for now in (0..DAY).step_by(TICK as usize) {
        // Jobs: held ones end (published, or back delayed while Zuora works); tasks take visible ones.
        for job in jobs.iter_mut() {
            if let Some((_, until)) = job.held
                && until <= now
            {
                job.held = None;
                if job.transferring {
                    job.done_at = Some(now);
                } else {
                    job.polls += 1;
                    let delay = (consumer.poll_delay_secs << (job.polls - 1).min(16)).min(consumer.max_poll_delay_secs);
                    job.visible_at = now + delay;
                }
            }
        }
        let running: Vec<usize> =
            (0..tasks.len()).filter(|&i| !tasks[i].stopped && tasks[i].running_at <= now).collect();
        for &task in &running {
            let holding = jobs.iter().filter(|j| j.held.is_some_and(|(t, _)| t == task)).count();
            let free = jobs_in_flight.saturating_sub(holding);
            let waiting = jobs.iter_mut().filter(|j| j.done_at.is_none() && j.held.is_none() && j.visible_at <= now);
            for job in waiting.take(free) {
                // A poll takes a few seconds; a finished job's transfer takes its time.
                job.transferring = job.ready_at <= now;
                let busy = if job.transferring { job.transfer } else { TICK };
                job.held = Some((task, now + busy));
            }
        }
        let queued = || jobs.iter().filter(|j| j.submitted_at <= now && j.done_at.is_none() && j.held.is_none());
        let visible = queued().filter(|j| j.visible_at <= now).count();
        let delayed = queued().filter(|j| j.visible_at > now).count();
        let inflight = jobs.iter().filter(|j| j.held.is_some()).count();
        if running.is_empty() && visible > 0 {
            let since = *no_task_since.get_or_insert(now);
            replay.longest_wait_without_task = replay.longest_wait_without_task.max(now - since + TICK);
        } else {
            no_task_since = None;
        }

        // Once a minute: the metrics, the alarms, the policies.
        if now % 60 == 0 {
            replay.running.push(running.len());
            let backlog = (visible + inflight) as u64;
            if running.is_empty() {
                // No task: the per-task metric has no data; the from-zero alarm sees visible work.
                (above, below) = (0, 0);
                if visible > 0 && desired < 1 && now >= last_out + policy.from_zero_cooldown {
                    desired = 1;
                    last_out = now;
                }
            } else {
                let metric = backlog as f64 / running.len() as f64;
                above = if metric > policy.target as f64 { above + 1 } else { 0 };
                below = if metric < 0.9 * policy.target as f64 { below + 1 } else { 0 };
                let wanted = backlog.div_ceil(policy.target).clamp(policy.min, policy.max);
                if above >= 3 && wanted > desired && now >= last_out + policy.scale_out_cooldown {
                    desired = wanted;
                    last_out = now;
                }
                if below >= 15 && wanted < desired && now >= last_in.max(last_out) + policy.scale_in_cooldown {
                    desired = wanted;
                    last_in = now;
                }
            }
            desired = desired.clamp(policy.min, policy.max);
            // ECS: start tasks up to the count (running a minute later); stop idle, unprotected ones above it.
            let live = tasks.iter().filter(|t| !t.stopped).count() as u64;
            for _ in live..desired {
                tasks.push(Task { running_at: now + 60, stopped: false });
            }
            let mut excess = (live as i64 - desired as i64).max(0);
            for (i, task) in tasks.iter_mut().enumerate() {
                let protected = jobs.iter().any(|j| j.held.is_some_and(|(t, _)| t == i));
                if excess > 0 && !task.stopped && !protected {
                    task.stopped = true;
                    excess -= 1;
                }
            }
            replay.most_tasks = replay.most_tasks.max(tasks.iter().filter(|t| !t.stopped).count());
        }
        if now % 1800 == 0 {
            replay.rows.push(Row { at: now, visible, delayed, inflight, running: running.len(), desired });
        }
    }
    replay.jobs = std::mem::take(&mut jobs);
    replay
}

fn job(submitted_at: u64, ready_at: u64, transfer: u64) -> Job {
    Job {
        ready_at,
        transfer,
        visible_at: submitted_at,
        polls: 0,
        held: None,
        transferring: false,
        done_at: None,
        submitted_at,
    }
}

fn hhmm(seconds: u64) -> String {
    format!("{:02}:{:02}", seconds / 3600, seconds % 3600 / 60)
}

#[test]
fn a_day_of_queue_metrics_through_the_scaling_policies() {
    let policy = Policy::from_template();
    let consumer = ConsumerSettings::default();
    let jobs_in_flight = policy.target as usize; // the template sets consumer.jobs_in_flight to JobsPerConsumerTask
    let mut jobs = Vec::new();
    // 06:00: the daily request's 13 jobs, which Zuora finishes an hour later; a few minutes of transfer each.
    let daily = 6 * 3600;
    jobs.extend((0..13).map(|i| job(daily, daily + 3600 + i * 20, 180)));
    // 12:00: a full export of 240 windows; Zuora runs 50 at a time, 20 minutes each; 5 minutes of transfer each.
    let full = 12 * 3600;
    jobs.extend((0..240u64).map(|i| job(full, full + (i / 50 + 1) * 1200, 300)));

    let replay = replay(&policy, &consumer, jobs_in_flight, jobs);
    println!("| time (UTC) | visible | delayed | in flight | tasks running | desired |");
    println!("|---|---|---|---|---|---|");
    for row in &replay.rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            hhmm(row.at),
            row.visible,
            row.delayed,
            row.inflight,
            row.running,
            row.desired
        );
    }
    let last_daily = replay.jobs[..13].iter().map(|j| j.done_at.expect("every daily job is published")).max().unwrap();
    let last_full = replay.jobs[13..].iter().map(|j| j.done_at.expect("every window is published")).max().unwrap();
    let waits = replay.jobs.iter().map(|j| j.done_at.unwrap() - j.submitted_at);
    // From the daily jobs' first polls until Zuora finishes them (06:05 to 07:00), only polls are due.
    let waiting = &replay.running[(daily / 60 + 5) as usize..((daily + 3600) / 60) as usize];
    let (waiting_tasks, waiting_task_minutes) = (*waiting.iter().max().unwrap(), waiting.iter().sum::<usize>());
    println!(
        "daily jobs published by {}, full export by {}; at most {} tasks; longest wait of visible work with no task {} s; at most {} task(s) and {} task-minutes while the daily jobs waited at Zuora; longest job {} min",
        hhmm(last_daily),
        hhmm(last_full),
        replay.most_tasks,
        replay.longest_wait_without_task,
        waiting_tasks,
        waiting_task_minutes,
        waits.max().unwrap() / 60
    );
    assert!(replay.most_tasks as u64 <= policy.max);
    // From zero, visible work gets a task within the alarm's minute and the task's start.
    assert!(replay.longest_wait_without_task <= 180, "{} s", replay.longest_wait_without_task);
    // The daily jobs land soon after Zuora finishes them (07:00 to 07:04), not a poll delay later.
    assert!(last_daily <= daily + 3600 + 20 * 60, "{}", hhmm(last_daily));
    // The full export takes what the most tasks can transfer (5 minutes per window, `jobs_in_flight` at once per
    // task), within a quarter of an hour: the service reaches its maximum and stays there while work is queued.
    let capacity = policy.max * jobs_in_flight as u64;
    let at_best = full + 1200 + 240 * 300 / capacity;
    assert!(last_full <= at_best + 900, "{} against {} at best", hhmm(last_full), hhmm(at_best));
    // Polling jobs that wait at Zuora is little work: once a minute each, the thirteen messages come back together
    // and keep about two tasks (100 task-minutes over the hour; 67 when polls backed off to 15 minutes).
    assert!(waiting_task_minutes <= 110, "{waiting_task_minutes} task-minutes");
    // Quiet hours end at zero tasks.
    assert_eq!(replay.rows.last().unwrap().running, 0);
}
