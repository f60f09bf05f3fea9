using System.Text.Json;
using Microsoft.Data.Sqlite;
using Relay.Engine;
using Relay.Engine.State;

namespace Relay.Daemon.Store;

/// <summary>
/// The daemon's store: SQLite in WAL mode, one row per network, service, instance and flow, each
/// row's data as JSON. Every change of one operation is written in one SQLite transaction, so a
/// crash leaves the store at an operation boundary.
/// </summary>
public sealed class RelayStore : INetworkStore, IDisposable
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private readonly SqliteConnection _db;
    private readonly Lock _gate = new();

    /// <summary>Opens (and creates) the store at <paramref name="path"/>.</summary>
    public RelayStore(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        _db = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString());
        _db.Open();
        Execute("PRAGMA journal_mode=WAL;");
        Execute("PRAGMA synchronous=NORMAL;");
        Execute("""
            CREATE TABLE IF NOT EXISTS networks (name TEXT PRIMARY KEY, data TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS services (network TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (network, name));
            CREATE TABLE IF NOT EXISTS instances (network TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (network, name));
            CREATE TABLE IF NOT EXISTS flows (network TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (network, id));
            CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, data TEXT NOT NULL);
            """);
    }

    /// <summary>Every network with its services, instances and flows.</summary>
    public IReadOnlyList<StoredNetwork> Load()
    {
        lock (_gate)
        {
            var networks = Query("SELECT name, data FROM networks ORDER BY name", r => (Name: r.GetString(0), Options: JsonSerializer.Deserialize<NetworkOptions>(r.GetString(1), Json)!));
            return networks.Select(n => new StoredNetwork(
                n.Options,
                Query("SELECT data FROM services WHERE network = $n ORDER BY name", r => JsonSerializer.Deserialize<StoredService>(r.GetString(0), Json)!, ("$n", n.Name)),
                Query("SELECT data FROM instances WHERE network = $n ORDER BY name", r => JsonSerializer.Deserialize<StoredInstance>(r.GetString(0), Json)!, ("$n", n.Name)),
                Query("SELECT data FROM flows WHERE network = $n ORDER BY id", r => JsonSerializer.Deserialize<StoredFlow>(r.GetString(0), Json)!, ("$n", n.Name)))).ToArray();
        }
    }

    /// <summary>Records a network (its options).</summary>
    public void SaveNetwork(NetworkOptions options)
    {
        lock (_gate)
        {
            Execute("INSERT INTO networks (name, data) VALUES ($n, $d) ON CONFLICT(name) DO UPDATE SET data = excluded.data",
                ("$n", options.Name), ("$d", JsonSerializer.Serialize(options, Json)));
        }
    }

    /// <summary>Forgets a network and everything in it.</summary>
    public void DeleteNetwork(string name)
    {
        lock (_gate)
        {
            using var tx = _db.BeginTransaction();
            foreach (var table in new[] { "networks", "services", "instances", "flows" })
            {
                Execute($"DELETE FROM {table} WHERE {(table == "networks" ? "name" : "network")} = $n", tx, ("$n", name));
            }
            tx.Commit();
        }
    }

    /// <summary>Writes one operation's changes in one transaction.</summary>
    public void Save(NetworkChange change)
    {
        lock (_gate)
        {
            using var tx = _db.BeginTransaction();
            foreach (var s in change.Services)
            {
                Upsert("services", change.Network, s.Name, JsonSerializer.Serialize(s, Json), tx);
            }
            foreach (var name in change.RemovedServices)
            {
                Execute("DELETE FROM services WHERE network = $n AND name = $k", tx, ("$n", change.Network), ("$k", name));
            }
            foreach (var i in change.Instances)
            {
                Upsert("instances", change.Network, i.Name, JsonSerializer.Serialize(i, Json), tx);
            }
            foreach (var name in change.RemovedInstances)
            {
                Execute("DELETE FROM instances WHERE network = $n AND name = $k", tx, ("$n", change.Network), ("$k", name));
            }
            foreach (var f in change.Flows)
            {
                Execute("INSERT INTO flows (network, id, data) VALUES ($n, $k, $d) ON CONFLICT(network, id) DO UPDATE SET data = excluded.data",
                    tx, ("$n", change.Network), ("$k", f.Id), ("$d", JsonSerializer.Serialize(f, Json)));
            }
            foreach (var id in change.RemovedFlows)
            {
                Execute("DELETE FROM flows WHERE network = $n AND id = $k", tx, ("$n", change.Network), ("$k", id));
            }
            tx.Commit();
        }
    }

    /// <summary>Appends <paramref name="events"/> in one transaction and keeps only the newest <paramref name="keep"/>.</summary>
    public void AppendEvents(IReadOnlyList<RelayEvent> events, int keep)
    {
        lock (_gate)
        {
            using var tx = _db.BeginTransaction();
            foreach (var e in events)
            {
                Execute("INSERT INTO events (data) VALUES ($d)", tx, ("$d", JsonSerializer.Serialize(e, Json)));
            }
            Execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - $k", tx, ("$k", keep));
            tx.Commit();
        }
    }

    /// <summary>The newest <paramref name="max"/> events, oldest first.</summary>
    public IReadOnlyList<RelayEvent> LoadEvents(int max)
    {
        lock (_gate)
        {
            var newest = Query("SELECT data FROM events ORDER BY id DESC LIMIT $k", r => JsonSerializer.Deserialize<RelayEvent>(r.GetString(0), Json)!, ("$k", max));
            newest.Reverse();
            return newest;
        }
    }

    /// <inheritdoc />
    public void Dispose() => _db.Dispose();

    private void Upsert(string table, string network, string name, string data, SqliteTransaction tx)
        => Execute($"INSERT INTO {table} (network, name, data) VALUES ($n, $k, $d) ON CONFLICT(network, name) DO UPDATE SET data = excluded.data",
            tx, ("$n", network), ("$k", name), ("$d", data));

    private void Execute(string sql, params (string Name, object Value)[] parameters) => Execute(sql, null, parameters);

    private void Execute(string sql, SqliteTransaction? tx, params (string Name, object Value)[] parameters)
    {
        using var cmd = _db.CreateCommand();
        cmd.CommandText = sql;
        cmd.Transaction = tx;
        foreach (var (name, value) in parameters)
        {
            cmd.Parameters.AddWithValue(name, value);
        }
        cmd.ExecuteNonQuery();
    }

    private List<T> Query<T>(string sql, Func<SqliteDataReader, T> map, params (string Name, object Value)[] parameters)
    {
        using var cmd = _db.CreateCommand();
        cmd.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            cmd.Parameters.AddWithValue(name, value);
        }
        using var reader = cmd.ExecuteReader();
        var result = new List<T>();
        while (reader.Read())
        {
            result.Add(map(reader));
        }
        return result;
    }
}
