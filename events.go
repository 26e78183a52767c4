package cluster2

// lifecycle is the master's one path for lifecycle events (Event): the
// master's events (master.Config.OnEvent) and the ECV's marks
// (monitor.Options.OnEvent: EventMarkUp, EventMarkDown) both come to
// deliver, which hands each event to these subscribers, in this order, on
// the caller's goroutine (none of them blocks):
//
//  1. the emitter (emitterRuntime.event): arms a forked worker's rings,
//     drops a dead one's, then queues the event's publication to every
//     process (and after EventOld the Node original's dismiss). First, so
//     that what the later subscribers do about a worker (the user's hook
//     emitting to its pid) finds its rings armed, and so that publications
//     leave in the order of the events.
//  2. the monitor (monitorRuntime.event): the workers of the start, the ECV
//     (warm at EventUp, stopping at EventDown) and the dashboard's feed.
//     Before the user's hook, so that a hook that sees EventUp finds the ECV
//     answering up, and one that sees a mark finds it on the dashboard.
//  3. the profile sockets (monitorRuntime.dropProfileSocket): a dead
//     worker's is removed.
//  4. the service manager (notifier.event, only with NOTIFY_SOCKET):
//     READY=1 at EventUp, RELOADING=1 / READY=1 around a rolling restart,
//     STOPPING=1 at EventDown. After the monitor, so that READY=1 goes out
//     once the ECV answers up (a manager that starts the next unit on
//     READY finds the cluster in rotation); before the user's hook, so that
//     a slow hook does not delay what the manager is told.
//  5. the user's Config.OnEvent, last: it sees an event once the cluster's
//     own bookkeeping of it is done. This is the only place it is called.
//
// Every field is set before the first event can come: the monitor is added
// before it serves (a mark may come at once), the whole before the master
// starts.
type lifecycle struct {
	emitter *emitterRuntime
	monitor *monitorRuntime // nil: off, or not started yet
	notify  *notifier       // nil: NOTIFY_SOCKET unset
	user    func(Event)     // Config.OnEvent
}

// deliver hands e to every subscriber, in the order above.
func (l *lifecycle) deliver(e Event) {
	for _, s := range l.subscribers() {
		s.on(e)
	}
}

// subscriber is one entry of the list: name says who, for tests.
type subscriber struct {
	name string
	on   func(Event)
}

// subscribers returns the list, in its order; see lifecycle. The emitter's,
// the monitor's and the notifier's methods accept a nil receiver.
func (l *lifecycle) subscribers() []subscriber {
	subs := []subscriber{
		{"emitter", l.emitter.event},
		{"monitor", l.monitor.event},
		{"profile sockets", l.monitor.dropProfileSocket},
		{"service manager", l.notify.event},
	}
	if l.user != nil {
		subs = append(subs, subscriber{"Config.OnEvent", l.user})
	}
	return subs
}
