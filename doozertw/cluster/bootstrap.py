"""Bootstrap: found a new cluster exactly once, resume, or join as a learner.

A cluster is founded once. A node whose storage holds Raft state never
founds: it resumes under the member id recorded with that state
(``resume``). A node without state must find out whether a cluster already
exists; in memory-only mode a node that voted or acknowledged entries in an
earlier life must never do so again with the state it lost, so it joins
under a new member id.

States: PROBING -> MEMBER (founded) | JOINING -> MEMBER; RESUMED nodes go
straight to MEMBER (or JOINING if their stored id is not in the
configuration yet).

- PROBING: send ``Probe`` to every configured voter every ``interval``.
  Receiving a Probe also proves its sender is fresh (only fresh nodes
  probe). If any node answers MEMBER (it has state or belongs to a running
  cluster), a cluster exists: join. Only when EVERY configured voter is
  known fresh (unanimity, not a majority: a majority of fresh nodes may be
  nodes that lost their data while a survivor holds the cluster's log)
  found the cluster: every founder starts Raft with the same configuration
  (the configured names as member ids) and the same founding entries, so
  they agree without further coordination. A founder remembers which
  incarnation of each node it counted as fresh; when that same
  incarnation, still probing (its answer was lost), asks again, the
  founder answers FOUNDER and the asker founds too, taking the founder id
  that was meant for it (no other life of it can have used that id).
  A node that cannot reach every voter keeps probing: it never founds.
- JOINING: start Raft with an empty configuration under a new member id
  ``name~incarnation`` (never the id of an earlier life) and send
  ``JoinRequest`` to every known peer every ``interval`` until the leader
  has added this member (it then receives the log as a learner).
- ``attach`` mode (``--attach``): there are no configured voters; join.

Recovering a cluster whose majority lost its data for good is an
operator's decision (docs/operations.md: force a new cluster from a
survivor's data directory), never an automatic one.
"""

from __future__ import annotations

import enum

from twisted.internet import task
from twisted.logger import Logger

from doozertw.cluster import envelope as env
from doozertw.consensus import ConfState


class Phase(enum.Enum):
    PROBING = "probing"
    JOINING = "joining"
    MEMBER = "member"


class Bootstrapper:
    """Decides how this node enters the cluster; see the module docstring.

    ``voters``: names of the configured voters (this node included; empty
    in attach mode); ``peers()``: names to send JoinRequests to;
    ``incarnation``: a random token making this life's member id unique;
    ``on_member()`` is called once this node is a member of the cluster.
    """

    log = Logger()

    def __init__(self, driver, voters, incarnation, peer_addr, client_addr="",
                 reactor=None, interval=0.2, peers=None, on_member=None):
        self.driver = driver
        self.name = driver.name
        self.voters = frozenset(voters)
        self.join_id = f"{self.name}{env.INCARNATION_SEP}{incarnation}"
        self.peer_addr = peer_addr
        self.client_addr = client_addr
        self.reactor = reactor
        self.interval = interval
        self._peers = peers or (lambda: sorted(self.voters - {self.name}))
        self.on_member = on_member
        self.phase = Phase.PROBING
        self.fresh = {self.name: self.join_id}  # name -> incarnation known fresh
        self.founded_with = {}
        self.members = set()
        self._loop = None
        driver.on_envelope[env.Probe] = self._probed
        driver.on_envelope[env.ProbeReply] = self._probe_answered
        driver.on_role.append(lambda soft: self._check_member())
        driver.on_apply.append(lambda *_: self._check_member())

    def start(self, resume_as=None):
        """Enter the cluster; ``resume_as`` is the member id of this node's
        stored Raft state, if it has any."""
        if resume_as is not None:
            self._resume(resume_as)
            return
        if self.voters and self.name not in self.voters:
            raise ValueError(f"{self.name} is not one of the voters {sorted(self.voters)}")
        if not self.voters:
            self._join()
        elif self._decide():
            return
        else:
            self._every(self._probe)

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _every(self, action):
        self.stop()
        self._loop = task.LoopingCall(action)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=True)

    # -- probing --------------------------------------------------------------------

    def _probe(self):
        for peer in sorted(self.voters - {self.name}):
            self.driver.send_envelope(peer, env.Probe(self.join_id))

    def _state(self):
        if self.phase == Phase.PROBING:
            return env.FreshState.FRESH
        if self.phase == Phase.JOINING:
            return env.FreshState.JOINING
        return env.FreshState.MEMBER

    def _probed(self, from_name, probe):
        if env.name_of(probe.member) != from_name:
            return
        state = self._state()
        if self.founded_with.get(from_name) == probe.member:
            state = env.FreshState.FOUNDER
        self.driver.send_envelope(from_name, env.ProbeReply(
            self.driver.member_id or self.join_id, state, self.driver.leader or ""))
        if self.phase == Phase.PROBING and from_name in self.voters:
            self.fresh[from_name] = probe.member
            self._decide()

    def _probe_answered(self, from_name, reply):
        if self.phase != Phase.PROBING or env.name_of(reply.member) != from_name:
            return
        if reply.state == env.FreshState.FOUNDER and from_name in self.voters:
            self._found()  # it counted this very incarnation: take the founder id
            return
        if reply.state == env.FreshState.FRESH and from_name in self.voters:
            self.fresh[from_name] = reply.member
        elif reply.state == env.FreshState.MEMBER:
            self.members.add(from_name)
        self._decide()

    def _decide(self):
        """Found or join if the answers so far allow it; True if decided."""
        if self.members:
            self.log.info("{node}: a cluster exists ({members} answered); joining as a learner",
                          node=self.name, members=sorted(self.members))
            self._join()
            return True
        if self.fresh.keys() >= self.voters:
            self._found()
            return True
        return False

    def _resume(self, member_id):
        self.join_id = member_id
        self.phase = Phase.JOINING
        self.driver.start(member_id, ConfState())
        self.log.info("{node}: resumed as {member} from stored state", node=self.name,
                      member=member_id)
        if not self._check_member():
            self._every(self._ask_to_join)

    def _found(self):
        self.stop()
        self.log.info("{node}: founding the cluster with {voters} ({fresh} fresh)",
                      node=self.name, voters=sorted(self.voters), fresh=sorted(self.fresh))
        self.phase = Phase.MEMBER
        self.founded_with = dict(self.fresh)
        self.driver.start(self.name, ConfState(voters=self.voters))
        self._became_member()

    # -- joining --------------------------------------------------------------------

    def _join(self):
        self.phase = Phase.JOINING
        if not self.driver.started:
            self.driver.start(self.join_id, ConfState())
        self._every(self._ask_to_join)

    def _ask_to_join(self):
        if self._check_member():
            return
        request = env.JoinRequest(self.join_id, self.peer_addr, self.client_addr)
        for peer in self._peers():
            if peer != self.name:
                self.driver.send_envelope(peer, request)

    def _check_member(self):
        if self.phase == Phase.JOINING and self.driver.is_member():
            self.stop()
            self.phase = Phase.MEMBER
            self.log.info("{node}: joined as {member}", node=self.name,
                          member=self.driver.member_id)
            self._became_member()
        return self.phase == Phase.MEMBER

    def _became_member(self):
        if self.on_member is not None:
            self.on_member()


__all__ = ["Bootstrapper", "Phase"]
