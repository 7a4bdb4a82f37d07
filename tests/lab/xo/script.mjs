// Xen Orchestra's own XenAPI connector (npm `xen-api`) against a rollup lab pool.
//
//   node script.mjs URL USER PASSWORD
//
// Connects (URL may be a pool member: the client must follow HOST_IS_SLAVE to the
// master), waits for the objects cache, reports the pool as JSON on stdout, then drives
// it the way XO's rolling pool update does: a refused reboot, disable + enable of a
// member, a live migration through callAsync (task watched via event.from), a barrier,
// an update event seen in the cache. Exits 0 with {"ok": true, ...}, else 1 with the
// error in the JSON. tests/lab/test_xo_client.py runs it and asserts on the output.
import { createClient } from 'xen-api'

const [url, user, password] = process.argv.slice(2)
const out = { ok: false, steps: [] }
const step = name => out.steps.push(name)

const timeout = (promise, ms, what) =>
  Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms).unref()),
  ])

// Resolves when the cache holds an object for `ref` that satisfies `predicate`.
function waitObject(xapi, ref, predicate, what) {
  const current = xapi.getObjectByRef(ref, undefined)
  if (current !== undefined && predicate(current)) return Promise.resolve(current)
  return timeout(
    new Promise(resolve => {
      const listener = objects => {
        for (const object of Object.values(objects)) {
          if (object.$ref === ref && predicate(object)) {
            xapi.objects.removeListener('update', listener)
            resolve(object)
            return
          }
        }
      }
      xapi.objects.on('update', listener)
    }),
    15e3,
    what
  )
}

const xapi = createClient({
  url,
  auth: { user, password },
  allowUnauthorized: true,
  readOnly: false,
  eventPollDelay: 200, // after a failed event.from (default 1 min)
})
try {
  await timeout(xapi.connect(), 15e3, 'connect')
  step('connected')
  await timeout(xapi.objectsFetched, 15e3, 'objects fetched')
  step('objects fetched')

  const all = type => Object.values(xapi.objects.indexes.type[type] ?? {})
  const hosts = all('host').sort((a, b) => a.name_label.localeCompare(b.name_label))
  const guests = all('VM').filter(vm => !vm.is_a_template && !vm.is_control_domain)
  const master = xapi.pool.$master
  out.pool = xapi.pool.name_label
  out.master = master.name_label
  out.connected_to = xapi._url.hostname // where HOST_IS_SLAVE led the client
  out.hosts = hosts.map(host => ({
    name: host.name_label,
    address: host.address,
    enabled: host.enabled,
    live: host.$metrics.live,
    product_version: host.software_version.product_version,
    resident_vms: host.$resident_VMs.filter(vm => !vm.is_control_domain).length,
  }))
  out.vm_count = guests.length
  out.running_vm_count = guests.filter(vm => vm.power_state === 'Running').length
  out.types = Object.keys(xapi.objects.indexes.type).sort()
  out.rolling_upgrade = xapi.pool.other_config.rolling_upgrade_in_progress ?? null

  // A refused call must come back as a XapiError with xapi's code.
  const member = hosts.find(host => host.$ref !== master.$ref)
  try {
    await xapi.call('host.reboot', member.$ref)
    out.reboot_enabled_host = 'accepted'
  } catch (error) {
    out.reboot_enabled_host = error.code
  }

  // disable, seen in the cache through event.from; then enable again.
  const updates = []
  xapi.objects.on('update', objects => {
    for (const object of Object.values(objects)) updates.push(object.$type)
  })
  await xapi.call('host.disable', member.$ref)
  out.disabled_seen = !(await waitObject(xapi, member.$ref, h => !h.enabled, 'host disabled')).enabled
  await xapi.call('host.enable', member.$ref)
  out.enabled_seen = (await waitObject(xapi, member.$ref, h => h.enabled, 'host enabled')).enabled
  step('disable/enable')

  // A live migration as XO starts it: Async.VM.pool_migrate, task watched by events.
  const movable = guests.find(
    vm =>
      vm.power_state === 'Running' &&
      vm.resident_on !== member.$ref &&
      vm.allowed_operations.includes('pool_migrate')
  )
  const from = movable.$resident_on.name_label
  const result = await timeout(
    xapi.callAsync('VM.pool_migrate', movable.$ref, member.$ref, { live: 'true' }),
    20e3,
    'migration task'
  )
  const moved = await waitObject(xapi, movable.$ref, vm => vm.resident_on === member.$ref, 'VM moved')
  out.migration = { vm: moved.name_label, from, to: moved.$resident_on.name_label, result }
  step('migrated')

  // One host as XO's rolling pool update takes it: list each host's missing patches
  // through the updater plugin, disable, evacuate, install them (callAsync), record the
  // install time, reboot, then wait until the cache shows it enabled, live and with a
  // newer agent_start_time.
  const checkUpdate = async host =>
    JSON.parse(await xapi.call('host.call_plugin', host.$ref, 'updater.py', 'check_update', {}))
  out.pending = {}
  for (const host of hosts) out.pending[host.name_label] = (await checkUpdate(host)).map(p => p.name)
  await xapi.call('host.disable', member.$ref)
  await timeout(xapi.callAsync('host.evacuate', member.$ref), 20e3, 'evacuation task')
  const installed = JSON.parse(
    await timeout(
      xapi.callAsync('host.call_plugin', member.$ref, 'updater.py', 'update', {}),
      20e3,
      'update task'
    )
  )
  await xapi.call('host.remove_from_other_config', member.$ref, 'rpm_patch_installation_time')
  await xapi.call('host.add_to_other_config', member.$ref, 'rpm_patch_installation_time', String(Date.now() / 1000))
  out.update = {
    host: member.name_label,
    returncode: installed.returncode,
    left: (await checkUpdate(member)).length,
  }
  step('patched')
  const emptied = await waitObject(xapi, member.$ref, h => h.resident_VMs.length === 1, 'host empty')
  const agentStart = Number(emptied.other_config.agent_start_time)
  await xapi.call('host.reboot', member.$ref)
  const wentDown = waitObject(xapi, member.$ref, h => !h.$metrics?.live, 'host down')
  const back = await waitObject(
    xapi,
    member.$ref,
    h => h.enabled && h.$metrics?.live && Number(h.other_config.agent_start_time) > agentStart,
    'host back'
  )
  await wentDown
  out.reboot = {
    host: back.name_label,
    went_down: true,
    agent_start_time_newer: Number(back.other_config.agent_start_time) > agentStart,
    enabled: back.enabled,
    live: back.$metrics.live,
  }
  step('rebooted')

  // XO's barrier: pool.add_to_other_config + the event that shows it, then removal.
  const barrierPool = await timeout(xapi.barrier(xapi.pool.$ref), 15e3, 'barrier')
  out.barrier = barrierPool.$ref === xapi.pool.$ref
  // XO removes its barrier key without waiting: wait for the event that shows it gone.
  const barrierKeys = pool => Object.keys(pool.other_config).filter(k => k.startsWith('xo:barrier:'))
  await waitObject(xapi, xapi.pool.$ref, pool => barrierKeys(pool).length === 0, 'barrier key removed')
  out.update_types = [...new Set(updates)].sort()
  out.tasks_left = all('task').filter(task => task.status === 'pending').length
  step('barrier')
  out.ok = true
} catch (error) {
  out.error = { message: String(error?.message ?? error), code: error?.code, params: error?.params }
} finally {
  await timeout(xapi.disconnect(), 5e3, 'disconnect').catch(() => {})
  step('disconnected')
}
process.stdout.write(JSON.stringify(out) + '\n')
// No process.exit: node ends once the client's last requests (its session.logout) are done.
process.exitCode = out.ok ? 0 : 1
