"""The studio as MCP tools (issue 14, part 4): the Gradio API's functions, served by Gradio's MCP
server at ``/gradio_api/mcp/`` (streamable HTTP), listed with their descriptions and run end to
end by a real MCP client (the ``mcp`` SDK) on the tiny model."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from tests.conftest import LiveServer

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


async def _session(url: str, work):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(f"{url}/gradio_api/mcp/") as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return await work(session)


def test_an_mcp_client_lists_the_tools_and_generates_a_video(live_server):
    async def work(session):
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        generated = await session.call_tool("generate", {
            "prompt": "a paper lantern over a river", "duration_seconds": 1, "fps": 12, "resolution": "480p",
            "num_inference_steps": 10, "model": "tiny", "seed": 5})
        text = generated.content[0].text
        task_id = UUID.search(text).group(0)
        status = await session.call_tool("get_status", {"task_id": task_id})
        return tools, generated, text, task_id, status.content[0].text

    tools, generated, text, task_id, status = asyncio.run(_session(live_server.url, work))
    assert {"generate", "get_status", "cancel_task", "library", "inpaint", "v2v", "lipsync_video",
            "scene_edit"} <= set(tools)
    schema = tools["generate"].inputSchema
    assert schema["required"] == ["prompt"] and "480p" in schema["properties"]["resolution"]["enum"]
    assert "Generate a video from text" in tools["generate"].description
    assert not generated.isError and "'status': 'completed'" in text
    assert "completed" in status
    owner = live_server.studio.store.get(task_id).owner  # the MCP session's own owner, like any visitor
    assert live_server.studio.result(task_id, owner).metadata.model == "tiny"


def test_the_mcp_server_can_be_turned_off(tmp_path):
    with LiveServer(tmp_path / "data", mcp_server=False) as server:
        assert httpx.get(f"{server.url}/gradio_api/mcp/schema").status_code == 404


@pytest.mark.parametrize("path", ["/gradio_api/mcp/schema"])
def test_the_mcp_schema_is_served_when_on(live_server, path):
    response = httpx.get(f"{live_server.url}{path}")
    assert response.status_code == 200 and any(tool["name"] == "generate" for tool in response.json())
