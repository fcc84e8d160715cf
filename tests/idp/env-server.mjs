// A stdio MCP server (official TypeScript SDK) for the static_secret test: its tool `env`
// reports which environment variable names it received and its full argv, so a test can check
// a secret arrived in the environment and never on the command line.
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';

const mcp = new McpServer({ name: 'env-server', version: '1.0.0' });
mcp.registerTool('env', { description: 'Reports the API_KEY it got and its argv.' }, async () => ({
  content: [{ type: 'text', text: JSON.stringify({ api_key: process.env.API_KEY ?? null, argv: process.argv }) }],
}));
await mcp.connect(new StdioServerTransport());
